package demo

import (
	"context"
	"fmt"
	"net/http"

	"github.com/wshub/wshub"
)

// Healthz is the handler of /healthz: 200 "ok" while the process serves
// HTTP, whatever the state of its hub and store.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

// Readyz returns the handler of /readyz: 200 "ready" while hub.Ready()
// (it accepts connections), otherwise 503 with the reason: "shutting
// down" once stopping has ended, else "store feed not subscribed" (a
// shared store such as Redis is down or not reached yet).
func Readyz(stopping context.Context, hub *wshub.Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case hub.Ready():
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "ready")
		case stopping.Err() != nil:
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
		default:
			http.Error(w, "not ready: store feed not subscribed", http.StatusServiceUnavailable)
		}
	})
}
