package agent

// ApiVersions (key 18), versions 0-4, as Kafka 4.1 serves them.
//
// Differences from Kafka: no SupportedFeatures or FinalizedFeatures are
// reported (Floe has no KRaft feature levels). Produce is listed from
// version 0 although only 3+ is served: Kafka 4 does the same because
// librdkafka (KAFKA-18659) refuses to produce to a broker that does not list
// Produce v0-v2. Only the APIs Floe serves are listed.

import (
	"context"
	"regexp"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// softwareNameRE is Kafka's pattern for ClientSoftwareName/Version (KIP-511).
var softwareNameRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$`)

func (a *Agent) handleAPIVersions(_ context.Context, _ *request, req *kmsg.ApiVersionsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version >= 3 && (!softwareNameRE.MatchString(req.ClientSoftwareName) || !softwareNameRE.MatchString(req.ClientSoftwareVersion)) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	}
	resp.ApiKeys = a.apiVersionList()
	return resp, nil
}

// unsupportedAPIVersions answers an ApiVersions request of a version newer
// than served: UNSUPPORTED_VERSION in the v0 format, with the versions, so
// the client retries with one it finds there (KIP-511).
func (a *Agent) unsupportedAPIVersions() kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = a.apiVersionList()
	return resp
}

func (a *Agent) apiVersionList() []kmsg.ApiVersionsResponseApiKey {
	var keys []kmsg.ApiVersionsResponseApiKey
	for _, s := range a.apis {
		if s == nil {
			continue
		}
		keys = append(keys, kmsg.ApiVersionsResponseApiKey{ApiKey: s.key, MinVersion: s.advertisedMin, MaxVersion: s.max})
	}
	return keys
}
