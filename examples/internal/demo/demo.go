// Package demo serves the demo chat page of the wshub examples: a small
// single-page chat (sign in with a name, direct messages, rooms, history,
// a visible connection state and outbox; the conversation list from the
// hub with unread badges, a seen tick from the peer's read marker,
// "typing…" and online dots) built on the browser client wshub.js. Both
// examples/stdlib and examples/gin mount it.
//
// The page connects to the hub at /ws of the same origin and passes the
// signed-in name as the token (development authentication: the token is
// the user id). It also sets the cookie wshub_token to the name, for
// servers that authenticate by cookie.
//
// Query parameters of the page, mostly for tests:
//
//	user=NAME          sign in as NAME at once
//	ws=PATH            hub path (default /ws)
//	backoffBase=MS     first reconnect delay ceiling (default 500)
//	backoffMax=MS      reconnect delay cap (default 30000)
//	heartbeat=MS       ping interval (default 25000)
//	pongTimeout=MS     ping answer timeout (default 10000)
package demo

import (
	"bytes"
	"embed"
	"net/http"
	"time"

	"github.com/wshub/wshub/client/js"
)

//go:embed static
var static embed.FS

// assets maps the paths the handler serves to files under static/ and
// their content types.
var assets = map[string]struct{ file, ctype string }{
	"/":          {"static/index.html", "text/html; charset=utf-8"},
	"/app.js":    {"static/app.js", "text/javascript; charset=utf-8"},
	"/style.css": {"static/style.css", "text/css; charset=utf-8"},
}

// Handler returns the handler of the demo page. It serves / (the page),
// /app.js, /style.css and /wshub.js (the browser client), answers 404 for
// any other path and 405 for methods other than GET and HEAD. Mount it at
// the root of a mux next to the hub:
//
//	mux.Handle("/ws", hub)
//	mux.Handle("/", demo.Handler())
func Handler() http.Handler {
	client := js.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/"+js.FileName {
			client.ServeHTTP(w, r)
			return
		}
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := static.ReadFile(a.file)
		if err != nil { // cannot happen: the files are embedded
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if a.file == "static/index.html" {
			h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
			h.Set("Referrer-Policy", "no-referrer")
		}
		http.ServeContent(w, r, a.file, time.Time{}, bytes.NewReader(b))
	})
}
