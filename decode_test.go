package wshub

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeFastMatchesEncodingJSON: whenever the fast path decodes a
// frame, encoding/json decodes the same input to the same frame.
func FuzzDecodeFastMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"cmd":10,"dstid":42,"content":"x","cid":"c1","media":1,"amount":-2.5e3}`,
		`{"cmd":14,"ids":["a","b"],"id":"c"}`,
		`{"cmd":12,"dstid":"r","since":3,"epoch":"e","recovered":false,"more":true}`,
		`{"cmd":21,"userid":"u","online":false,"ts":5}`,
		`{"cmd":16,"dstid":"u","before":9,"limit":-1,"ts":-5,"code":400,"reason":"r"}`,
		`{ "cmd" : 1 , "userid" : "é" }`, `{}`, `{"cmd":1.5}`, `{"cmd":1,"seq":-1}`, `{"cmd":1}x`,
		`{"Cmd":1}`, `{"cmd":1,"content":"a\"b"}`, `{"cmd":1,"cmd":2}`, `{"cmd":1,"ids":[]}`,
		`{"cmd":18,"items":[{"cmd":10,"dstid":"b","seq":3,"read":2,"seen":1,"unread":1}]}`, `{"cmd":19,"dstid":"r","room":true,"seq":4,"read":-1,"unread":1.5}`,
		`{"cmd":99999999999999999999}`, `{"cmd":1,"dstid":1e5}`, `{"cmd":0,"media":01}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast Frame
		if !decodeFast(data, &fast) {
			return
		}
		var slow Frame
		require.NoError(t, json.Unmarshal(data, &slow), "fast path accepted %q", data)
		if len(slow.IDs) == 0 && len(fast.IDs) == 0 {
			slow.IDs, fast.IDs = nil, nil
		}
		require.Equal(t, slow, fast, "input %q", data)
	})
}
