package client

// dedup remembers the last size message ids, oldest forgotten first. It is
// not safe for concurrent use; only the reader goroutine of the current
// connection touches it (connections of one client never overlap).
type dedup struct {
	size int
	ring []string // grows to size, then used as a ring
	next int      // next slot of ring to overwrite once full
	set  map[string]struct{}
}

func newDedup(size int) *dedup {
	return &dedup{size: size, set: make(map[string]struct{})}
}

// seen reports whether id was added and is still remembered.
func (d *dedup) seen(id string) bool {
	_, ok := d.set[id]
	return ok
}

// add remembers id, forgetting the oldest id when size are remembered.
func (d *dedup) add(id string) {
	if d.size <= 0 {
		return
	}
	if _, ok := d.set[id]; ok {
		return
	}
	if len(d.ring) < d.size {
		d.ring = append(d.ring, id)
	} else {
		delete(d.set, d.ring[d.next])
		d.ring[d.next] = id
		d.next = (d.next + 1) % d.size
	}
	d.set[id] = struct{}{}
}
