package wshub

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzPayloadMatchesEncodingJSON: appendPayload, which stores every
// message's application fields, refuses what encoding/json refuses and
// otherwise encodes what decodes to the same payload.
func FuzzPayloadMatchesEncodingJSON(f *testing.F) {
	f.Add("1", "hello <&> \u2028 \"q\"", "p.png", "https://x", "memo\n", "-2.5e3", `{"a":[1,2]}`)
	f.Add("", "", "", "", "", "", "")
	f.Add("01", "x", "", "", "", "", "")
	f.Add("", "", "", "", "", "", "{bad")
	f.Add("", "\xff", "", "", "", "1", " [ 1 , 2 ] ")
	f.Fuzz(func(t *testing.T, media, content, pic, url, memo, amount, data string) {
		fr := &Frame{Media: json.Number(media), Content: content, Pic: pic, URL: url, Memo: memo, Amount: json.Number(amount)}
		if data != "" {
			fr.Data = json.RawMessage(data)
		}
		got, err := fr.appendPayload(nil)
		want, werr := json.Marshal(fr.payload())
		if werr != nil {
			require.Error(t, err, "encoding/json refused %+v: %v", fr.payload(), werr)
			return
		}
		if err != nil {
			// Only where encoding/json is laxer than JSON itself: a
			// number with surrounding space, say.
			var n json.Number
			require.Error(t, json.Unmarshal([]byte(`{"n":`+media+amount+`}`), &n), "appendPayload refused %+v: %v", fr.payload(), err)
			return
		}
		require.True(t, json.Valid(got), "%q", got)
		var a, b payload
		require.NoError(t, json.Unmarshal(got, &a))
		require.NoError(t, json.Unmarshal(want, &b))
		require.Equal(t, b, compactData(a), "%q against %q", got, want)
	})
}

// compactData compacts p.Data as encoding/json's Marshal does.
func compactData(p payload) payload {
	if len(p.Data) > 0 {
		if b, err := json.Marshal(p.Data); err == nil {
			p.Data = b
		}
	}
	return p
}

func BenchmarkPayload(b *testing.B) {
	fr := &Frame{Media: "1", Content: "hello, this is a typical chat message"}
	b.Run("appendPayload", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fr.appendPayload(make([]byte, 0, 32+len(fr.Content))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(fr.payload()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
