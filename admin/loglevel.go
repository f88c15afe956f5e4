package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// levelHandler serves /loglevel. GET shows the level as {"level":"info"};
// PUT (or POST) changes it and accepts the level however a client sends
// it: JSON {"level":"debug"} whatever the Content-Type says (curl -d sends
// JSON bodies as a form), a form level=debug, or the bare word debug.
func levelHandler(lvl *zap.AtomicLevel) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPut, http.MethodPost:
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<10))
			if err != nil {
				httpError(w, http.StatusRequestEntityTooLarge, errors.New("body too large"))
				return
			}
			l, err := parseLevelBody(body)
			if err != nil {
				httpError(w, http.StatusBadRequest, err)
				return
			}
			lvl.SetLevel(l)
		default:
			w.Header().Set("Allow", "GET, PUT, POST")
			httpError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s: use GET, or PUT with {\"level\":\"debug\"}", r.Method))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"level": lvl.Level().String()})
	})
}

func parseLevelBody(body []byte) (zapcore.Level, error) {
	s := strings.TrimSpace(string(body))
	var name string
	switch {
	case strings.HasPrefix(s, "{"):
		var v struct {
			Level *string `json:"level"`
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil || v.Level == nil {
			return 0, errors.New(`want {"level":"debug"} (debug, info, warn or error)`)
		}
		name = *v.Level
	case strings.Contains(s, "="):
		f, err := url.ParseQuery(s)
		if err != nil || !f.Has("level") {
			return 0, errors.New("want level=debug (debug, info, warn or error)")
		}
		name = f.Get("level")
	default:
		name = s
	}
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(name)); err != nil || name == "" {
		return 0, fmt.Errorf("%q is not a level: use debug, info, warn or error", name)
	}
	return l, nil
}
