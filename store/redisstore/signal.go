package redisstore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/wshub/wshub/store"
)

var _ store.Signaler = (*Store)(nil)

// encodeSignal returns the announcement of sig (kind wireSignal):
//
//	's'
//	uvarint number of users, then uvarint length + bytes of each user
//	uvarint length + bytes of Room, then of Origin
//	Data: the rest, unchanged
func encodeSignal(sig *store.Signal) string {
	n := 1 + (3+len(sig.Users))*binary.MaxVarintLen64 + len(sig.Room) + len(sig.Origin) + len(sig.Data)
	for _, u := range sig.Users {
		n += len(u)
	}
	b := make([]byte, 0, n)
	b = append(b, wireSignal)
	b = binary.AppendUvarint(b, uint64(len(sig.Users)))
	for _, u := range sig.Users {
		b = appendString(b, u)
	}
	b = appendString(b, sig.Room)
	b = appendString(b, sig.Origin)
	return string(append(b, sig.Data...))
}

// decodeSignal parses the fields of a signal announcement after its kind
// byte. Users, Room and Origin share memory with p; Data is a copy (nil
// when empty). An empty user, or neither users nor a room (Signal never
// publishes those), is ErrCorrupt.
func decodeSignal(p string) (store.Signal, error) {
	d := decoder{s: p}
	n := d.uvarint()
	if d.bad || n > uint64(len(d.s)) { // each user takes at least one byte
		return store.Signal{}, fmt.Errorf("%w: malformed signal announcement", ErrCorrupt)
	}
	var sig store.Signal
	if n > 0 {
		sig.Users = make([]string, n)
		for i := range sig.Users {
			sig.Users[i] = d.string()
			if d.bad || sig.Users[i] == "" {
				return store.Signal{}, fmt.Errorf("%w: malformed signal announcement", ErrCorrupt)
			}
		}
	}
	sig.Room = d.string()
	sig.Origin = d.string()
	if d.bad || (n == 0 && sig.Room == "") {
		return store.Signal{}, fmt.Errorf("%w: malformed signal announcement", ErrCorrupt)
	}
	if d.s != "" {
		sig.Data = []byte(d.s)
	}
	return sig, nil
}

// Signal implements store.Signaler: SPUBLISH of sig on the channel of
// each of sig.Users (each copy naming that user only) and on sig.Room's
// channel, in one pipeline, so the subscribers following them receive it
// as an EventSignal (see Subscribe). Nothing is stored. An empty user in
// sig.Users is rejected with an error wrapping store.ErrInvalid; a
// signal with neither users nor a room reaches nobody and is not
// published.
func (s *Store) Signal(ctx context.Context, sig store.Signal) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, u := range sig.Users {
		if u == "" {
			return fmt.Errorf("%w: empty user in a signal", store.ErrInvalid)
		}
	}
	if len(sig.Users) == 0 && sig.Room == "" {
		return nil
	}
	pipe := s.client.Pipeline()
	for _, u := range sig.Users {
		one := store.Signal{Users: []string{u}, Origin: sig.Origin, Data: sig.Data}
		pipe.SPublish(ctx, s.userChannel(u), encodeSignal(&one))
	}
	if sig.Room != "" {
		one := store.Signal{Room: sig.Room, Origin: sig.Origin, Data: sig.Data}
		pipe.SPublish(ctx, s.roomChannel(sig.Room), encodeSignal(&one))
	}
	_, err := pipe.Exec(ctx)
	return s.wrap("signal", err)
}
