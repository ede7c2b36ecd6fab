// Package js ships the wshub browser client, wshub.js, inside Go binaries so
// that a server can hand it to pages without a build step or a CDN:
//
//	mux.Handle("/wshub.js", js.Handler())
//
// The page then imports it as an ES module:
//
//	import { WSHubClient } from '/wshub.js';
package js

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// FileName is the name the client is served under by convention.
const FileName = "wshub.js"

//go:embed wshub.js
var source []byte

// etag names this version of wshub.js so that browsers can revalidate
// their copy with If-None-Match. Computed once; never written afterwards.
var etag = func() string {
	sum := sha256.Sum256(source)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// Source returns a copy of wshub.js.
func Source() []byte {
	return bytes.Clone(source)
}

// Handler returns an http.Handler that serves wshub.js at any path it is
// mounted on, as text/javascript, answering GET and HEAD (with conditional
// requests and ranges, like http.ServeContent) and refusing other methods
// with 405.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, FileName, time.Time{}, bytes.NewReader(source))
	})
}
