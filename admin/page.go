package admin

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
)

// Status page sizes.
const (
	pageSize  = 50 // nodes per page of the table
	goneShown = 20 // recently lost or forgotten nodes shown (/api/gone has 100)
	// readyTimeout bounds the readiness check (which may dial the broker)
	// for the page: a broker that does not answer must not stall it.
	readyTimeout = 2 * time.Second
)

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
		"rate":       formatRate,
		"duration":   func(d time.Duration) string { return d.String() },
		"utc":        func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	}
	return &pageRenderer{tmpl: template.Must(template.New("status").Funcs(funcs).Parse(statusPage))}
}

// pageData is what the status page shows.
type pageData struct {
	Now   time.Time
	Build buildinfo.Info
	// overview
	Uptime    time.Duration
	Started   time.Time
	Ready     bool
	NotReady  string
	Listeners []Listener
	Broker    string
	Link      *LinkStatus // nil: unknown
	Mode      string
	Census    gateway.Census
	States    []stateCount
	Nodes     int
	Connects  uint64
	Lost      uint64
	Retrans   uint64
	Dropped   uint64
	Malformed uint64
	Charts    []chart
	// node table
	Err       string
	Query     tableQuery
	Page      gateway.NodePage
	From      int // 1-based index of the first row shown
	To        int
	Prev      string // URLs of the neighbouring pages, "" at either end
	Next      string
	Headers   []header
	AllStates []string
	Gone      []gateway.GoneNode
	GoneAll   int
}

type stateCount struct {
	State string
	N     int
}

// tableQuery is the node table's query string: q, state, sort, desc, page.
type tableQuery struct {
	Search string
	State  string
	Sort   gateway.SortKey
	Desc   bool
	Page   int // 1-based
}

func parseTableQuery(v url.Values) tableQuery {
	q := tableQuery{Search: v.Get("q"), State: v.Get("state"), Sort: gateway.SortKey(v.Get("sort")), Desc: v.Get("desc") == "1"}
	if !slices.Contains(gateway.SortKeys(), q.Sort) {
		q.Sort = gateway.SortClientID
	}
	if !slices.Contains(nodeStates[:], q.State) {
		q.State = ""
	}
	q.Page, _ = strconv.Atoi(v.Get("page"))
	q.Page = max(q.Page, 1)
	return q
}

// url is the page's URL for q.
func (q tableQuery) url() string {
	v := url.Values{}
	if q.Search != "" {
		v.Set("q", q.Search)
	}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Sort != gateway.SortClientID {
		v.Set("sort", string(q.Sort))
	}
	if q.Desc {
		v.Set("desc", "1")
	}
	if q.Page > 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// header is a sortable column heading.
type header struct {
	Label string
	URL   string
	Arrow string // "▲" or "▼" on the column sorted by
}

func headers(q tableQuery) []header {
	cols := []struct {
		label string
		key   gateway.SortKey
	}{
		{"ClientId", gateway.SortClientID}, {"State", gateway.SortState}, {"Last seen", gateway.SortLastSeen},
		{"Buffered", gateway.SortBuffered}, {"Datagrams in / out", gateway.SortDatagramsIn}, {"Retrans\u00admissions", gateway.SortRetrans},
	}
	var hs []header
	for _, c := range cols {
		n := q
		n.Page = 1
		n.Sort = c.key
		// Dates and counts: the largest first; names ascending.
		n.Desc = c.key != gateway.SortClientID && c.key != gateway.SortState
		h := header{Label: c.label}
		if q.Sort == c.key {
			n.Desc = !q.Desc
			h.Arrow = "▲"
			if q.Desc {
				h.Arrow = "▼"
			}
		}
		h.URL = n.url()
		hs = append(hs, h)
	}
	return hs
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	now := time.Now()
	st := s.src.Stats()
	d := pageData{
		Now:       now,
		Build:     s.cfg.Build,
		Started:   s.cfg.Started,
		Uptime:    now.Sub(s.cfg.Started).Round(time.Second),
		Listeners: s.cfg.Listeners,
		Broker:    s.cfg.Broker,
		Mode:      s.cfg.Mode,
		Connects:  st.Connects.Load(),
		Lost:      st.Lost.Load(),
		Retrans:   st.Retransmits.Load(),
		Malformed: st.Malformed.Load(),
		Charts:    charts(s.rates.window(now), now),
		Query:     parseTableQuery(r.URL.Query()),
		AllStates: nodeStates[:],
	}
	for _, dc := range dropCounts(st) {
		d.Dropped += dc.v
	}
	if s.cfg.Link != nil {
		l := s.cfg.Link()
		d.Link = &l
	}
	rctx, rcancel := context.WithTimeout(ctx, readyTimeout)
	if err := s.ready(rctx); err != nil {
		d.NotReady = err.Error()
	} else {
		d.Ready = true
	}
	rcancel()

	if cn, err := s.src.Census(ctx); err != nil {
		d.Err = err.Error()
	} else {
		d.Census = cn
		for _, name := range nodeStates {
			d.Nodes += cn.ByState[name]
			if n := cn.ByState[name]; n > 0 {
				d.States = append(d.States, stateCount{name, n})
			}
		}
	}
	q := d.Query
	page, err := s.src.QueryClients(ctx, gateway.NodeQuery{Search: q.Search, State: q.State, Sort: q.Sort, Desc: q.Desc,
		Offset: (q.Page - 1) * pageSize, Limit: pageSize})
	if err != nil && d.Err == "" {
		d.Err = err.Error()
	}
	d.Page = page
	if len(page.Rows) > 0 {
		d.From = (q.Page-1)*pageSize + 1
		d.To = d.From + len(page.Rows) - 1
	}
	if q.Page > 1 {
		p := q
		p.Page--
		d.Prev = p.url()
	}
	if q.Page*pageSize < page.Total {
		n := q
		n.Page++
		d.Next = n.url()
	}
	d.Headers = headers(q)
	gone := s.src.RecentlyGone()
	d.GoneAll = len(gone)
	d.Gone = gone[:min(len(gone), goneShown)]

	var buf bytes.Buffer
	if err := s.page.tmpl.Execute(&buf, d); err != nil {
		s.log.Warn("admin: status page", zap.Error(err))
		http.Error(w, "status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// ratio formats datagrams per message: "2.00 (5)", or "" with no message.
func ratio(datagrams, messages uint64) string {
	if messages == 0 {
		return ""
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
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>mqttsn-gateway status</title>
<style>
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 0.5em 1.5em 2em; max-width: 1280px; color: #222; }
h1 { font-size: 1.4em; margin: 0.3em 0; }
h2 { font-size: 1.1em; margin: 1.2em 0 0.4em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 0.6em; }
.card { border: 1px solid #ddd; border-radius: 4px; padding: 0.5em 0.7em; min-width: 0; overflow-wrap: anywhere; }
.card h3 { font-size: 0.85em; font-weight: 600; color: #555; margin: 0 0 0.3em; text-transform: uppercase; letter-spacing: 0.03em; }
.charts { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 0.6em; }
svg.chart { width: 100%; height: auto; display: block; }
svg .ax { font-size: 10px; fill: #666; }
.legend { font-size: 12px; margin: 0.2em 0 0; padding: 0; list-style: none; }
.legend li { display: inline-block; margin-right: 0.8em; }
.sw { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; vertical-align: -0.05em; margin-right: 0.25em; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin: 0.4em 0 0.8em; }
th, td { border: 1px solid #ccc; padding: 2px 5px; text-align: right; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f0f0f0; font-weight: 600; }
th a { color: inherit; text-decoration: none; }
td.l, th.l { text-align: left; }
.state-active, .state-awake, .up { color: #060; }
.state-asleep { color: #036; }
.state-lost, .state-disconnected, .down, .err { color: #900; }
.state-connecting { color: #850; }
small, .muted { color: #666; }
form.filter { display: flex; flex-wrap: wrap; gap: 0.5em; align-items: center; margin: 0.3em 0; }
form.filter input[type=search] { width: 22em; max-width: 100%; }
.pager a { margin: 0 0.4em; }
</style>
</head>
<body>
<h1>mqttsn-gateway</h1>
<section id="overview" class="grid">
<div class="card" id="build"><h3>Build</h3>
{{.Build.Version}}<br><small>commit {{.Build.Short}}{{if .Build.Time}}, {{.Build.Time}}{{end}}{{if .Build.Modified}}, modified{{end}}; {{.Build.GoVersion}}</small><br>
up {{duration .Uptime}} <small>(since {{utc .Started}})</small></div>
<div class="card" id="readiness"><h3>Readiness</h3>
{{if .Ready}}<span class="up">Ready</span>{{else}}<span class="err">Not ready</span>: {{.NotReady}}{{end}}<br>
mode: {{if .Mode}}{{.Mode}}{{else}}unknown{{end}}</div>
<div class="card" id="broker"><h3>Broker link</h3>
{{with .Link}}{{if .Up}}<span class="up">up</span>{{else}}<span class="down">down</span>{{end}}{{if .Protocol}}, MQTT {{.Protocol}}{{end}}{{if not .Since.IsZero}}, since {{ago $.Now .Since}}{{end}}
{{if .LastError}}<br><span class="err">{{.LastError}}</span>{{end}}{{if not .Checked.IsZero}}<br><small>checked {{ago $.Now .Checked}}</small>{{end}}
{{else}}unknown <small>(no link probe)</small>{{end}}
{{if .Broker}}<br><small>{{.Broker}}</small>{{end}}</div>
<div class="card" id="listeners"><h3>Listeners</h3>
{{range .Listeners}}{{.Transport}} {{.Addr}}<br>{{else}}<small>not given</small>{{end}}</div>
<div class="card" id="nodes-summary"><h3>Nodes</h3>
{{.Nodes}} nodes{{range .States}} · {{.N}} {{.State}}{{end}}<br>
<small>buffered {{.Census.Buffered}} messages ({{.Census.BufferedBytes}} bytes), {{.Census.InFlight}} deliveries in flight</small></div>
<div class="card" id="counters"><h3>Since start</h3>
connects {{.Connects}} · lost {{.Lost}} · retransmissions {{.Retrans}} · dropped {{.Dropped}} · malformed {{.Malformed}}</div>
</section>

<h2>Last hour</h2>
<section class="charts">
{{- range .Charts}}
<div class="card" id="{{.ID}}"><h3>{{.Title}}</h3>
{{.SVG}}
<ul class="legend">{{range .Series}}<li><span class="sw" style="background: {{.Color}}"></span>{{.Name}}: {{rate .Last}}/s <small>({{.Total}} in the hour)</small></li>{{end}}</ul>
</div>
{{- end}}
</section>

<h2 id="nodes-title">Nodes</h2>
{{if .Err}}<p class="err">Nodes unavailable: {{.Err}}</p>{{end}}
<form class="filter" method="get" action="/">
<input type="search" name="q" value="{{.Query.Search}}" placeholder="ClientId or address contains…" aria-label="Search nodes">
<select name="state" aria-label="State"><option value="">any state</option>{{range .AllStates}}<option value="{{.}}"{{if eq . $.Query.State}} selected{{end}}>{{.}}</option>{{end}}</select>
{{if ne .Query.Sort "client_id"}}<input type="hidden" name="sort" value="{{.Query.Sort}}">{{end}}{{if .Query.Desc}}<input type="hidden" name="desc" value="1">{{end}}
<button type="submit">Filter</button>
<span class="pager">{{if .Page.Total}}{{.From}}–{{.To}} of {{.Page.Total}}{{else}}0 of {{.Nodes}}{{end}}{{if .Prev}}<a href="{{.Prev}}">‹ previous</a>{{end}}{{if .Next}}<a href="{{.Next}}">next ›</a>{{end}}</span>
</form>
<table id="nodes">
<colgroup><col style="width: 16%"><col style="width: 8%"><col style="width: 13%"><col style="width: 5%"><col style="width: 8%"><col style="width: 8%"><col style="width: 6%"><col style="width: 7%"><col style="width: 8%"><col style="width: 6%"><col style="width: 15%"></colgroup>
<thead><tr>
{{- $h := .Headers}}
<th class="l"><a href="{{(index $h 0).URL}}">{{(index $h 0).Label}} {{(index $h 0).Arrow}}</a></th>
<th class="l"><a href="{{(index $h 1).URL}}">{{(index $h 1).Label}} {{(index $h 1).Arrow}}</a></th>
<th class="l">Address</th><th class="l">Trans&shy;port</th><th>Keep-alive / sleep</th>
<th><a href="{{(index $h 2).URL}}">{{(index $h 2).Label}} {{(index $h 2).Arrow}}</a></th>
<th>Subs / topics</th>
<th><a href="{{(index $h 3).URL}}">{{(index $h 3).Label}} {{(index $h 3).Arrow}}</a></th>
<th><a href="{{(index $h 4).URL}}">{{(index $h 4).Label}} {{(index $h 4).Arrow}}</a></th>
<th><a href="{{(index $h 5).URL}}">{{(index $h 5).Label}} {{(index $h 5).Arrow}}</a></th>
<th class="l">Datagrams per message</th>
</tr></thead>
<tbody>
{{- range .Page.Rows}}
<tr class="node">
<td class="l"><a href="/api/clients/{{pathEscape .ClientID}}">{{.ClientID}}</a>{{if .ForwarderNode}}<br><small>via forwarder, node {{.ForwarderNode}}</small>{{end}}</td>
<td class="l state-{{.State}}">{{.State}}{{if .InFlight}}<br><small>delivery in flight</small>{{end}}</td>
<td class="l">{{.Addr}}</td>
<td class="l">{{.Transport}}</td>
<td>{{duration .KeepAlive}}{{if .SleepDuration}} / {{duration .SleepDuration}}{{end}}</td>
<td>{{ago $.Now .LastSeen}}</td>
<td>{{.Subscriptions}} / {{.Topics}}</td>
<td>{{.Buffered}}<br><small>{{.BufferedBytes}} B</small></td>
<td>{{.Traffic.DatagramsIn}} / {{.Traffic.DatagramsOut}}<br><small>{{.Traffic.BytesIn}} / {{.Traffic.BytesOut}} B</small></td>
<td>{{.Traffic.Retransmissions}}{{if .Traffic.WakeCycles}}<br><small>{{.Traffic.WakeCycles}} wakes</small>{{end}}</td>
<td class="l"><small>{{with .Traffic}}
{{- with ratio (index .DownlinkDatagrams 1) (index .Delivered 1)}}down QoS 0: {{.}}<br>{{end}}
{{- with ratio (index .DownlinkDatagrams 2) (index .Delivered 2)}}down QoS 1: {{.}}<br>{{end}}
{{- with ratio (index .DownlinkDatagrams 3) (index .Delivered 3)}}down QoS 2: {{.}}<br>{{end}}
{{- with ratio (index .UplinkDatagrams 1) (index .Uplinked 1)}}up QoS 0: {{.}}<br>{{end}}
{{- with ratio (index .UplinkDatagrams 2) (index .Uplinked 2)}}up QoS 1: {{.}}<br>{{end}}
{{- with ratio (index .UplinkDatagrams 3) (index .Uplinked 3)}}up QoS 2: {{.}}{{end}}
{{- end}}</small></td>
</tr>
{{- else}}
<tr><td class="l" colspan="11">No nodes{{if or .Query.Search .Query.State}} match{{end}}.</td></tr>
{{- end}}
</tbody>
</table>
<p><small>Datagrams per message count both directions: for a QoS 1 delivery, PUBLISH and PUBACK (2.00), plus REGISTER and REGACK when a topic id was needed, plus every retransmission; in brackets the messages delivered (down) or accepted by the broker (up).</small></p>

<h2 id="gone-title">Recently lost or forgotten</h2>
<table id="gone">
<colgroup><col style="width: 20%"><col style="width: 12%"><col style="width: 26%"><col style="width: 12%"><col style="width: 18%"><col style="width: 12%"></colgroup>
<thead><tr><th class="l">ClientId</th><th class="l">What</th><th class="l">Reason</th><th>When</th><th class="l">Address</th><th>Last seen</th></tr></thead>
<tbody>
{{- range .Gone}}
<tr class="gone"><td class="l">{{.ClientID}}</td><td class="l">{{.Event}}</td><td class="l">{{.Reason}}</td><td>{{ago $.Now .At}}</td><td class="l">{{.Addr}} <small>{{.Transport}}</small></td><td>{{ago $.Now .LastSeen}}</td></tr>
{{- else}}
<tr><td class="l" colspan="6">None since start.</td></tr>
{{- end}}
</tbody>
</table>
{{if gt .GoneAll (len .Gone)}}<p><small>The {{len .Gone}} newest of {{.GoneAll}}: all in <a href="/api/gone">/api/gone</a>.</small></p>{{end}}
<p><small>{{utc .Now}}; refreshes every 30 s. Raw data: <a href="/api/clients">/api/clients</a>, <a href="/api/gone">/api/gone</a>, <a href="/metrics">/metrics</a>.</small></p>
</body>
</html>
`
