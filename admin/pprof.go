package admin

import (
	"net/http"
	"net/http/pprof"
)

// registerPprof serves the Go profiler at /debug/pprof/ (index, cmdline,
// profile, symbol, trace and every runtime profile by name). It is
// registered only when Config.Pprof is set: profiles reveal the process's
// memory, and a CPU profile costs CPU while it runs.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
