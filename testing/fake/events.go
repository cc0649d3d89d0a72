package fake

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// BreakEvents ends every open event stream with err on its error channel,
// as when the connection to the engine drops. A nil err stands for
// io.ErrUnexpectedEOF, which the client reports for a cut stream.
func (f *Swarm) BreakEvents(err error) {
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		delete(f.subs, sub)
		sub.broken <- err // buffered, and each subscriber is broken once
	}
}

// Events implements dockerapi.API. Like the real client, it returns once subscribed
// (no event published after it returns is missed), never closes the
// message channel, and ends the stream by sending one error, ctx.Err() or
// the one given to BreakEvents, then closing the error channel. Filters:
// type, event, scope, service, network and config (ID or name, prefix). Since and
// Until are ignored: there is no history.
func (f *Swarm) Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error) {
	msgs := make(chan events.Message)
	errs := make(chan error, 1)
	if err := f.begin(ctx, dockerapi.OpEvents); err != nil {
		errs <- err
		close(errs)
		return msgs, errs
	}
	sub := &subscriber{filter: options.Filters.Clone(), wake: make(chan struct{}, 1), broken: make(chan error, 1)}
	f.mu.Lock()
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	go func() {
		defer close(errs)
		end := func(err error) {
			f.mu.Lock()
			delete(f.subs, sub)
			f.mu.Unlock()
			errs <- err
		}
		for {
			msg, ok := sub.pop()
			if !ok {
				select {
				case <-ctx.Done():
					end(ctx.Err())
					return
				case err := <-sub.broken:
					end(err)
					return
				case <-sub.wake:
					continue
				}
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				end(ctx.Err())
				return
			case err := <-sub.broken:
				end(err)
				return
			}
		}
	}()
	return msgs, errs
}

type subscriber struct {
	filter filters.Args
	mu     sync.Mutex
	queue  []events.Message // unbounded, so publishing never blocks a write
	wake   chan struct{}
	broken chan error
}

func (s *subscriber) push(m events.Message) {
	s.mu.Lock()
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) pop() (events.Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return events.Message{}, false
	}
	m := s.queue[0]
	s.queue = s.queue[1:]
	return m, true
}

// publishLocked sends an event to the matching subscribers. It runs after
// the state changed, under the lock, so subscribers see events in order.
func (f *Swarm) publishLocked(typ events.Type, action events.Action, id, scope string, attrs map[string]string) {
	now := time.Now()
	m := events.Message{
		Type: typ, Action: action, Scope: scope, Time: now.Unix(), TimeNano: now.UnixNano(),
		Actor: events.Actor{ID: id, Attributes: attrs},
	}
	for sub := range f.subs {
		a := sub.filter
		if a.ExactMatch("type", string(typ)) && a.ExactMatch("event", string(action)) && a.ExactMatch("scope", scope) &&
			(a.FuzzyMatch("service", id) || a.FuzzyMatch("service", attrs["name"])) &&
			(a.FuzzyMatch("network", id) || a.FuzzyMatch("network", attrs["name"])) &&
			(a.FuzzyMatch("config", id) || a.FuzzyMatch("config", attrs["name"])) {
			sub.push(clone(m))
		}
	}
}
