package fetch

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// Decoding into a buffer of decodedLen bytes works for every length and
// yields exactly that many bytes.
func TestDecodedLenExact(t *testing.T) {
	for size := range 200 {
		data := bytes.Repeat([]byte{0xa5}, size)
		enc := base64.StdEncoding.EncodeToString(data)
		n := decodedLen(enc)
		if n != size {
			t.Fatalf("decodedLen of %d bytes encoded = %d", size, n)
		}
		buf := make([]byte, n)
		got, err := base64.StdEncoding.Decode(buf, []byte(enc))
		if err != nil || got != size || !bytes.Equal(buf, data) {
			t.Fatalf("%d bytes: Decode into %d = %d, %v", size, n, got, err)
		}
	}
	for _, odd := range []string{"=", "==", "A===", "====", "QQ=", "Q", "QUJD\n"} {
		buf := make([]byte, decodedLen(odd))
		_, _ = base64.StdEncoding.Decode(buf, []byte(odd)) // must not panic
	}
}
