package upstream

import "github.com/mqttsn-gateway/mqttsn-gateway/gateway"

// credentials selects the user name and password a session logs in with:
// the node's own (opts.Auth, from an MQTT-SN AUTH) when it sent them,
// else the configured broker.username and broker.password. ok is false
// when there is nothing to send (anonymous CONNECT). Every session, of
// either protocol version, takes its credentials from here.
func (u *Upstream) credentials(opts gateway.SessionOptions) (user string, pass []byte, ok bool) {
	if a := opts.Auth; a != nil {
		return a.Username, a.Password, a.Username != "" || a.Password != nil
	}
	if u.cfg.Password != "" {
		pass = []byte(u.cfg.Password)
	}
	return u.cfg.Username, pass, u.cfg.Username != "" || pass != nil
}
