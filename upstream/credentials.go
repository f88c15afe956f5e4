package upstream

import (
	"net/url"
	"strings"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// ClientIDPlaceholder, in broker.username or broker.password, is replaced
// by the node's ClientId (as the node sent it, without
// broker.client_id_prefix), so that each node logs in as itself.
const ClientIDPlaceholder = "{client_id}"

// credentials returns the user name and password to send in the CONNECT of
// a session opened with opts: the node's own (opts.Auth, from an MQTT-SN
// AUTH) when it sent some; otherwise the configured ones (broker.username
// and broker.password, or the user information of broker.url), with
// ClientIDPlaceholder replaced by opts.ClientID. An empty user name or a nil
// password is not sent.
func (u *Upstream) credentials(opts gateway.SessionOptions) (user string, pass []byte) {
	if a := opts.Auth; a != nil {
		return a.Username, a.Password
	}
	user = strings.ReplaceAll(u.ep.username, ClientIDPlaceholder, opts.ClientID)
	if u.ep.hasPassword {
		pass = []byte(strings.ReplaceAll(u.ep.password, ClientIDPlaceholder, opts.ClientID))
	}
	return user, pass
}

// RedactURL returns rawURL with any password replaced by "xxxxx"
// ("mqtt://alice:xxxxx@host:1883"), for logs and error messages. A string
// that does not parse is not repeated.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable broker.url)"
	}
	return u.Redacted()
}
