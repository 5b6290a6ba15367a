package resultcache

// Decode and Encode expose the record format to the fuzz test.
var (
	Decode = decode
	Encode = encode
	KeyOf  = keyOf
)
