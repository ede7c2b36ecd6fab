package redisstore

import (
	"context"
	"slices"

	"github.com/wshub/wshub/store"
)

// AppendConvStepOnly runs step 1 of Append alone (the conversation's
// step: seq, history, cid record), as an Append would if its process died
// right after it, and returns the stored message.
func AppendConvStepOnly(ctx context.Context, s *Store, req store.AppendRequest) (store.Message, error) {
	var pending []string
	for _, u := range req.Pending {
		if !slices.Contains(pending, u) {
			pending = append(pending, u)
		}
	}
	cidKey := ""
	if req.CID != "" {
		cidKey = s.cidKey(req.Msg.Conv, req.Msg.From, req.CID)
	}
	e, _, _, err := s.appendConv(ctx, req, pending, cidKey)
	if err != nil {
		return store.Message{}, err
	}
	return e.msg, nil
}

// UserChannel is the channel of user's announcements.
func UserChannel(s *Store, user string) string { return s.userChannel(user) }

// DecodeAnnouncedMessage decodes a message announcement (header and
// stored value) into the message and its origin.
func DecodeAnnouncedMessage(payload string) (store.Message, string, error) {
	d := decoder{s: payload}
	d.byte()
	origin := d.string()
	m, err := decode(d.s)
	return m, origin, err
}

// PresenceChannel is the channel of presence transitions.
func PresenceChannel(s *Store) string { return s.presenceChannel() }
