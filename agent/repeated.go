package agent

// repeatedKeys returns the keys that more than one of items has. Kafka
// refuses an entry a request names twice (a topic, a resource) rather
// than guess which one the client meant; the handlers answer such entries
// with INVALID_REQUEST from this set.
func repeatedKeys[T any, K comparable](items []T, key func(T) K) map[K]bool {
	seen := make(map[K]bool, len(items))
	repeated := make(map[K]bool)
	for _, it := range items {
		k := key(it)
		if seen[k] {
			repeated[k] = true
		}
		seen[k] = true
	}
	return repeated
}
