package gateway

import "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"

// connackFor is the CONNACK return code for a node whose upstream session
// could not be opened: "not supported" (0x03) when retrying cannot help
// (the broker refused the credentials, the ClientId or the protocol), so
// that the node stops hammering; "congestion" (0x01, try again later) for
// trouble that passes (broker unreachable, busy, a timeout).
func connackFor(err error) snpacket.ReturnCode {
	if IsPermanent(err) {
		return snpacket.RejectedNotSupported
	}
	return snpacket.RejectedCongestion
}
