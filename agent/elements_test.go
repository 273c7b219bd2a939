package agent

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLeadingNamesMatchesDecoding: the count leadingNames reads from a
// request's raw body is the length of the array kmsg decodes, at every
// version of each request it reads, and requestElements counts it.
func TestLeadingNamesMatchesDecoding(t *testing.T) {
	const n = 3
	for _, req := range []kmsg.Request{
		&kmsg.MetadataRequest{Topics: make([]kmsg.MetadataRequestTopic, n)},
		&kmsg.ListOffsetsRequest{ReplicaID: -1, Topics: make([]kmsg.ListOffsetsRequestTopic, n)},
		&kmsg.CreateTopicsRequest{Topics: make([]kmsg.CreateTopicsRequestTopic, n)},
		&kmsg.DeleteTopicsRequest{TopicNames: make([]string, n), Topics: make([]kmsg.DeleteTopicsRequestTopic, n)},
		&kmsg.DeleteRecordsRequest{Topics: make([]kmsg.DeleteRecordsRequestTopic, n)},
		&kmsg.DescribeConfigsRequest{Resources: make([]kmsg.DescribeConfigsRequestResource, n)},
		&kmsg.AlterConfigsRequest{Resources: make([]kmsg.AlterConfigsRequestResource, n)},
		&kmsg.IncrementalAlterConfigsRequest{Resources: make([]kmsg.IncrementalAlterConfigsRequestResource, n)},
		&kmsg.CreatePartitionsRequest{Topics: make([]kmsg.CreatePartitionsRequestTopic, n)},
		&kmsg.DescribeGroupsRequest{Groups: make([]string, n)},
		&kmsg.DeleteGroupsRequest{Groups: make([]string, n)},
		&kmsg.OffsetFetchRequest{Groups: make([]kmsg.OffsetFetchRequestGroup, n)},
		&kmsg.ConsumerGroupDescribeRequest{Groups: make([]string, n)},
	} {
		for v := int16(0); v <= req.MaxVersion(); v++ {
			req.SetVersion(v)
			body := req.AppendTo(nil)
			got, ok := leadingNames(req.Key(), v, req.IsFlexible(), body)
			if req.Key() == int16(kmsg.OffsetFetch) && v < 8 {
				if ok {
					t.Errorf("%s v%d: leading names read, but it opens with a group", kmsg.NameForKey(req.Key()), v)
				}
				continue
			}
			dec := kmsg.RequestForKey(req.Key())
			dec.SetVersion(v)
			if err := dec.ReadFrom(body); err != nil {
				t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), v, err)
			}
			names, _ := requestElements(dec)
			if !ok || got != n || names != n {
				t.Errorf("%s v%d: leading names %d (ok %v), counted %d, want %d", kmsg.NameForKey(req.Key()), v, got, ok, names, n)
			}
		}
	}
}
