// Package ingester consumes Tributary's Kafka topics, one consumer group per
// sink, and writes the records to the sink with at-least-once delivery: an
// offset is marked only after the sink acknowledged every record up to it.
package ingester

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// Prober is implemented by sinks that can tell, without writing data,
// whether they accept writes at all (reachable, right URL, valid
// credentials). Probe returns nil when a write could succeed now.
type Prober interface {
	Probe(ctx context.Context) error
}

// Record is one Kafka record with its parsed envelope.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []*sarama.RecordHeader
	Envelope  *recordpb.Envelope
}

// Sink writes records to a backend.
//
// Write returns nil only after every record is durable in the sink. All
// records of one call have the same tenant and come from one partition, in
// offset order. An error wrapped with Permanent means the sink refuses the
// data and retrying cannot help (the records go to the dead-letter topic); any
// other error is retried. Write may be called again with the same records
// (at-least-once): sinks must tolerate duplicates.
type Sink interface {
	Write(ctx context.Context, recs []Record) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, recs []Record) error

// Write calls f.
func (f SinkFunc) Write(ctx context.Context, recs []Record) error { return f(ctx, recs) }

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// Permanent marks err as a refusal that retrying cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// RetryAfterError is a retryable error with the delay the backend asked for.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return fmt.Sprintf("%v (retry after %s)", e.Err, e.After) }
func (e *RetryAfterError) Unwrap() error { return e.Err }
