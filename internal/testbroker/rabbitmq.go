package testbroker

import (
	"os"
	"testing"
)

// RabbitMQEnv names the environment variable with the host:port of a
// RabbitMQ MQTT listener (.ci/run starts one and sets it).
const RabbitMQEnv = "MQTTSN_TEST_RABBITMQ"

// RabbitMQ returns a Target for the RabbitMQ broker named by
// MQTTSN_TEST_RABBITMQ (MQTT 3.1.1 only; the gateway uses protocol auto,
// which must fall back to 3.1.1). The test is skipped when the variable is
// unset, and fails instead when CI=true: CI must run it. RabbitMQ is
// shared by every test and cannot be stopped from one; use unique
// ClientIDs and topics.
func RabbitMQ(t testing.TB) Target {
	t.Helper()
	addr := os.Getenv(RabbitMQEnv)
	if addr == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testbroker: %s is not set; CI must run the RabbitMQ tests (see .ci/run)", RabbitMQEnv)
		}
		t.Skipf("testbroker: %s not set (host:port of a RabbitMQ MQTT listener)", RabbitMQEnv)
	}
	return Target{Name: "rabbitmq", URL: "mqtt://" + addr, V311Only: true, ctl: &control{name: "rabbitmq", addr: addr, external: true}}
}
