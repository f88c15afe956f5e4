package admin

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// maxPageNodes bounds the nodes listed on the status page; /api/clients
// has them all.
const maxPageNodes = 1000

// pageRenderer renders the status page. html/template escapes every value
// for its context: ClientIds and topic names come from the nodes.
type pageRenderer struct {
	tmpl *template.Template
}

func newPageRenderer() *pageRenderer {
	funcs := template.FuncMap{
		"pathEscape": url.PathEscape,
		"ratio":      ratio,
		"ago":        ago,
		"seconds":    func(s float64) string { return (time.Duration(s * float64(time.Second))).String() },
	}
	return &pageRenderer{tmpl: template.Must(template.New("status").Funcs(funcs).Parse(statusPage))}
}

// pageData is what the status page shows.
type pageData struct {
	Now       time.Time
	Ready     bool
	Err       string
	Total     int
	Shown     []gateway.ClientInfo
	Truncated bool
	States    []stateCount
	Buffered  int
	BufBytes  int64
	Connects  uint64
	Lost      uint64
	Retrans   uint64
	Dropped   uint64
	Malformed uint64
}

type stateCount struct {
	State string
	N     int
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	st := s.src.Stats()
	d := pageData{
		Now:       time.Now(),
		Connects:  st.Connects.Load(),
		Lost:      st.Lost.Load(),
		Retrans:   st.Retransmits.Load(),
		Malformed: st.Malformed.Load(),
		Dropped: st.InboxDropped.Load() + st.NoSession.Load() + st.BufferDropped.Load() + st.QoSMinusOneDrop.Load() +
			st.ForwarderDenied.Load() + st.IdentityRefused.Load(),
	}
	select {
	case <-s.src.Ready():
		d.Ready = true
	default:
	}
	cs, err := s.src.Clients(ctx)
	if err != nil {
		d.Err = err.Error()
	}
	d.Total = len(cs)
	counts := make(map[string]int)
	for i := range cs {
		counts[cs[i].State]++
		d.Buffered += cs[i].Buffered
		d.BufBytes += cs[i].BufferedBytes
	}
	for _, name := range nodeStates {
		if n := counts[name]; n > 0 {
			d.States = append(d.States, stateCount{name, n})
			delete(counts, name)
		}
	}
	for name, n := range counts {
		d.States = append(d.States, stateCount{name, n})
	}
	if len(cs) > maxPageNodes {
		cs, d.Truncated = cs[:maxPageNodes], true
	}
	d.Shown = cs

	var buf bytes.Buffer
	if err := s.page.tmpl.Execute(&buf, d); err != nil {
		s.log.Warn("admin: status page", zap.Error(err))
		http.Error(w, "status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// ratio formats datagrams per message: "2.00 (5)", or "–" with no message.
func ratio(datagrams, messages uint64) string {
	if messages == 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(datagrams)/float64(messages), 'f', 2, 64) + " (" + strconv.FormatUint(messages, 10) + ")"
}

// ago formats how long before now t was.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%s ago", d)
}

const statusPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>mqttsn-gateway status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; }
td.l, th.l { text-align: left; }
.state-active, .state-awake { color: #060; }
.state-asleep { color: #036; }
.state-lost, .state-disconnected { color: #900; }
.err { color: #900; }
small { color: #666; }
</style>
</head>
<body>
<h1>mqttsn-gateway</h1>
<p>{{if .Ready}}Serving{{else}}<span class="err">Not ready</span>{{end}} ·
{{.Total}} nodes{{range .States}} · {{.N}} {{.State}}{{end}} ·
buffered {{.Buffered}} messages ({{.BufBytes}} bytes) ·
connects {{.Connects}} · lost {{.Lost}} · retransmissions {{.Retrans}} · dropped {{.Dropped}} · malformed {{.Malformed}}
<br><small>{{.Now.UTC.Format "2006-01-02 15:04:05 UTC"}}; refreshes every 10 s. Raw data: <a href="/api/clients">/api/clients</a>, <a href="/metrics">/metrics</a>.</small></p>
{{if .Err}}<p class="err">Nodes unavailable: {{.Err}}</p>{{end}}
{{if .Truncated}}<p>Showing the first {{len .Shown}} nodes of {{.Total}}.</p>{{end}}
<h2>Nodes</h2>
<table id="nodes">
<thead>
<tr><th class="l" rowspan="2">ClientId</th><th class="l" rowspan="2">State</th><th class="l" rowspan="2">Address</th><th class="l" rowspan="2">Transport</th>
<th rowspan="2">Keep-alive / sleep</th><th rowspan="2">Last seen</th><th rowspan="2">Subs</th><th rowspan="2">Topics</th><th rowspan="2">Buffered</th>
<th colspan="2">Datagrams</th><th colspan="2">Bytes</th><th rowspan="2">Retrans&shy;missions</th><th rowspan="2">Wake cycles</th>
<th colspan="3">Downlink: datagrams per delivered message (messages)</th>
<th colspan="3">Uplink: datagrams per message (messages)</th></tr>
<tr><th>in</th><th>out</th><th>in</th><th>out</th><th>QoS 0</th><th>QoS 1</th><th>QoS 2</th><th>QoS 0</th><th>QoS 1</th><th>QoS 2</th></tr>
</thead>
<tbody>
{{- $now := .Now}}
{{- range .Shown}}
<tr class="node">
<td class="l"><a href="/api/clients/{{pathEscape .ClientID}}">{{.ClientID}}</a>{{if .ForwarderNode}}<br><small>via forwarder, node {{.ForwarderNode}}</small>{{end}}</td>
<td class="l state-{{.State}}">{{.State}}{{if .InFlight}}<br><small>delivery in flight</small>{{end}}</td>
<td class="l">{{.Addr}}</td>
<td class="l">{{.Transport}}</td>
<td>{{seconds .KeepAlive}}{{if .SleepDuration}} / {{seconds .SleepDuration}}{{end}}</td>
<td>{{ago $now .LastSeen}}</td>
<td>{{len .Subscriptions}}</td>
<td>{{len .Topics}}</td>
<td>{{.Buffered}}<br><small>{{.BufferedBytes}} B</small></td>
<td>{{.Traffic.DatagramsIn}}</td><td>{{.Traffic.DatagramsOut}}</td>
<td>{{.Traffic.BytesIn}}</td><td>{{.Traffic.BytesOut}}</td>
<td>{{.Traffic.Retransmissions}}</td><td>{{.Traffic.WakeCycles}}</td>
{{- with .Traffic}}
<td>{{ratio (index .DownlinkDatagrams 1) (index .Delivered 1)}}</td>
<td>{{ratio (index .DownlinkDatagrams 2) (index .Delivered 2)}}</td>
<td>{{ratio (index .DownlinkDatagrams 3) (index .Delivered 3)}}</td>
<td>{{ratio (index .UplinkDatagrams 1) (index .Uplinked 1)}}</td>
<td>{{ratio (index .UplinkDatagrams 2) (index .Uplinked 2)}}</td>
<td>{{ratio (index .UplinkDatagrams 3) (index .Uplinked 3)}}</td>
{{- end}}
</tr>
{{- else}}
<tr><td class="l" colspan="21">No nodes.</td></tr>
{{- end}}
</tbody>
</table>
<p><small>Datagrams per message count both directions: for a QoS 1 delivery, PUBLISH and PUBACK (2.00), plus REGISTER and REGACK when a topic id was needed, plus every retransmission. The count in brackets is the messages delivered (downlink) or accepted by the broker (uplink).</small></p>
</body>
</html>
`
