package upstream

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
		host    string
	}{
		{"mqtt", Config{URL: "mqtt://localhost:1884"}, "", "localhost:1884"},
		{"tcp alias default port", Config{URL: "tcp://broker"}, "", "broker:1883"},
		{"mqtts default port", Config{URL: "mqtts://broker"}, "", "broker:8883"},
		{"ssl alias", Config{URL: "ssl://broker:1"}, "", "broker:1"},
		{"tls alias", Config{URL: "tls://broker:2"}, "", "broker:2"},
		{"ipv6", Config{URL: "mqtt://[::1]:1883"}, "", "[::1]:1883"},
		{"empty", Config{}, "broker.url: empty", ""},
		{"http", Config{URL: "http://x:80"}, `broker.url: unsupported scheme "http": use mqtt:// or mqtts://`, ""},
		{"no host", Config{URL: "mqtt://:1883"}, "broker.url", ""},
		{"path", Config{URL: "mqtt://x:1883/foo"}, "broker.url", ""},
		{"tls on plain", Config{URL: "mqtt://x", CAFile: "ca.pem"}, "broker.url: TLS settings", ""},
		{"keepalive fraction", Config{URL: "mqtt://x", KeepAlive: 1500 * time.Millisecond}, "broker.keep_alive", ""},
		{"keepalive too long", Config{URL: "mqtt://x", KeepAlive: 70000 * time.Second}, "broker.keep_alive", ""},
		{"backoff order", Config{URL: "mqtt://x", ReconnectBackoffMin: time.Minute, ReconnectBackoffMax: time.Second}, "broker.reconnect_backoff_max", ""},
		{"will delay negative", Config{URL: "mqtt://x", WillDelay: -time.Second}, "broker.will_delay: -1s is negative", ""},
		{"will delay fraction", Config{URL: "mqtt://x", WillDelay: 1500 * time.Millisecond}, "broker.will_delay", ""},
		{"will delay", Config{URL: "mqtt://x", WillDelay: time.Second}, "", "x:1883"},
		{"missing CA file", Config{URL: "mqtts://x", CAFile: "/nonexistent/ca.pem"}, "broker.ca_file", ""},
		{"cert without key", Config{URL: "mqtts://x", CertFile: "c.pem"}, "broker.key_file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := New(tt.cfg, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.ep.hostPort != tt.host {
				t.Fatalf("host %q, want %q", u.ep.hostPort, tt.host)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	u, err := New(Config{URL: "mqtt://x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := u.cfg
	if c.KeepAlive != 60*time.Second || c.ConnectTimeout != 10*time.Second ||
		c.ReconnectBackoffMin != time.Second || c.ReconnectBackoffMax != 30*time.Second ||
		c.ReceiveMaximum != 16 || c.AckTimeout != DefaultAckTimeout || c.WillDelay != 60*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}
