package redisstore

import "strings"

// Routing by interest: announcements are published with SPUBLISH (sharded
// pub/sub, which a Redis Cluster routes to the one shard owning the
// channel's slot, and a single Redis treats like PUBLISH) on the channel
// of what they concern, and each hub process subscribes (SSUBSCRIBE) only
// to the channels of the users it holds connections for and the rooms
// those users are members of. Each channel carries the hash tag of the
// keys it is published next to, so that a script can publish on it.
//
//	<prefix>{u:<user>}     a user's direct messages (to and from), its
//	                       membership changes, signals to it
//	<prefix>{c:r:<room>}   a room's messages and signals
//	<prefix>{presence}     presence transitions (every process listens)

// userChannel is the channel of user's announcements.
func (s *Store) userChannel(user string) string { return s.opts.Prefix + "{u:" + user + "}" }

// roomChannel is the channel of room's announcements.
func (s *Store) roomChannel(room string) string { return s.opts.Prefix + "{c:r:" + room + "}" }

// presenceChannel is the channel of presence transitions.
func (s *Store) presenceChannel() string { return s.opts.Prefix + "{presence}" }

// channelUser returns the user of a user channel, and false for another
// channel.
func (s *Store) channelUser(ch string) (string, bool) {
	rest, ok := strings.CutPrefix(ch, s.opts.Prefix+"{u:")
	if !ok || !strings.HasSuffix(rest, "}") {
		return "", false
	}
	return rest[:len(rest)-1], true
}
