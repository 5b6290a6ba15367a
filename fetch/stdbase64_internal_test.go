package fetch

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
	"testing/iotest"
)

// lenientDecode is what ParseDataURI's validation then its Reader make of a
// base64 payload found at offset at: the bytes, or scanPayload's error.
func lenientDecode(payload string, at int) ([]byte, error) {
	if _, err := scanPayload(payload, true, at); err != nil {
		return nil, err
	}
	return io.ReadAll(&base64Reader{src: payload})
}

// FuzzStdBase64Reader: stdBase64Reader, whatever its chunk size and however
// it is read, gives the bytes and the error of the lenient decoder for every
// payload. The payload is standard base64 of data with insert put in at pos
// (insert "" keeps it plain; data empty makes it any string).
func FuzzStdBase64Reader(f *testing.F) {
	abc := []byte("abcdefghijklmnopqrstuvwxyz0123456789")
	for _, seed := range []struct {
		data   []byte
		pos    uint16
		insert string
	}{
		{abc, 0, ""},
		{abc[:35], 0, ""},
		{abc[:34], 0, ""},
		{abc, 8, "\n"},
		{abc, 16, "\r\n"},
		{abc, 12, " "},
		{abc, 4, "-_"},
		{abc, 8, "QQ=="},
		{abc, 48, "="},
		{abc, 48, "=="},
		{abc, 47, "\n"},
		{abc, 20, "%2B"},
		{abc, 20, "%zz"},
		{abc, 20, "*"},
		{abc, 46, "Q"},
		{nil, 0, "QUJD\nQUJD"},
		{nil, 0, "QQ=\n="},
		{nil, 0, "QUJD="},
		{nil, 0, "QR=="},
		{nil, 0, "Q"},
		{nil, 0, "===="},
	} {
		for quanta := range uint8(4) {
			f.Add(seed.data, seed.pos, seed.insert, quanta)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, pos uint16, insert string, quanta uint8) {
		enc := base64.StdEncoding.EncodeToString(data)
		at := min(int(pos), len(enc))
		payload := enc[:at] + insert + enc[at:]
		want, wantErr := lenientDecode(payload, 7)
		for _, chunk := range []int{4 * (1 + int(quanta%16)), stdChunk} {
			for _, oneByte := range []bool{false, true} {
				var r io.Reader = newStdBase64Reader(payload, 7, chunk)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				got, err := io.ReadAll(r)
				if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
					t.Fatalf("payload %q, chunk %d: error %v, lenient decoder says %v", payload, chunk, err, wantErr)
				}
				if err == nil && !bytes.Equal(got, want) {
					t.Fatalf("payload %q, chunk %d: decoded %q, lenient decoder %q", payload, chunk, got, want)
				}
			}
		}
	})
}
