package events

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/loki/pkg/push"
	corev1 "k8s.io/api/core/v1"
)

// occurrence tells apart the occurrences of one Event object: a recurring
// event is one object whose count (core/v1) or series.count
// (events.k8s.io/v1 writers) grows and whose last timestamp moves. Each
// occurrence is one log line; an update that changes neither (labels,
// managed fields) is not a new occurrence.
type occurrence struct {
	UID   string `json:"uid"`
	Count int32  `json:"count"`
	// Last is the occurrence's time in Unix nanoseconds.
	Last int64 `json:"last"`
}

func occurrenceOf(e *corev1.Event) occurrence {
	count := e.Count
	if e.Series != nil && e.Series.Count > count {
		count = e.Series.Count
	}
	return occurrence{UID: string(e.UID), Count: count, Last: lastSeen(e).UnixNano()}
}

// lastSeen is the time of the event's latest occurrence: series'
// lastObservedTime, else lastTimestamp, else eventTime (new-style events
// leave lastTimestamp empty), else the object's creation.
func lastSeen(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func firstSeen(e *corev1.Event) time.Time {
	switch {
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// line is the JSON log line of one occurrence. Flat keys, so that LogQL's
// `| json` gives them as labels of the same names.
type line struct {
	Type               string `json:"type"`
	Reason             string `json:"reason"`
	Message            string `json:"message"`
	Kind               string `json:"kind"`
	Namespace          string `json:"namespace,omitempty"`
	Name               string `json:"name"`
	Count              int32  `json:"count"`
	FirstTimestamp     string `json:"firstTimestamp"`
	LastTimestamp      string `json:"lastTimestamp"`
	ReportingComponent string `json:"reportingComponent,omitempty"`
	ReportingInstance  string `json:"reportingInstance,omitempty"`
	// UID is the Event object's: with count it names the occurrence.
	UID string `json:"uid"`
}

// entry turns an event into its stream's labels and its log entry, stamped
// with the occurrence's time.
func entry(cluster string, e *corev1.Event) (labels string, ent push.Entry) {
	occ := occurrenceOf(e)
	ns := e.InvolvedObject.Namespace
	if ns == "" {
		ns = e.Namespace
	}
	l := line{
		Type: e.Type, Reason: e.Reason, Message: e.Message,
		Kind: e.InvolvedObject.Kind, Namespace: ns, Name: e.InvolvedObject.Name,
		Count:              max(occ.Count, 1),
		FirstTimestamp:     firstSeen(e).UTC().Format(time.RFC3339Nano),
		LastTimestamp:      lastSeen(e).UTC().Format(time.RFC3339Nano),
		ReportingComponent: e.ReportingController,
		ReportingInstance:  e.ReportingInstance,
		UID:                occ.UID,
	}
	// Writers of core/v1 events set source; events.k8s.io/v1 writers set
	// reportingController.
	if l.ReportingComponent == "" {
		l.ReportingComponent = e.Source.Component
	}
	if l.ReportingInstance == "" {
		l.ReportingInstance = e.Source.Host
	}
	b, _ := json.Marshal(l) // strings and ints only: cannot fail
	return streamLabels(cluster, ns, e.Type, e.Reason, e.InvolvedObject.Kind),
		push.Entry{Timestamp: lastSeen(e), Line: string(b)}
}

// streamLabels is {cluster, namespace, source="kubernetes-events", type,
// reason, kind}, sorted, without the empty ones (a Node's events have no
// namespace).
func streamLabels(cluster, namespace, typ, reason, kind string) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	add := func(name, value string) {
		if value == "" {
			return
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(value))
	}
	add("cluster", cluster)
	add("kind", kind)
	add("namespace", namespace)
	add("reason", reason)
	add("source", "kubernetes-events")
	add("type", typ)
	b.WriteByte('}')
	return b.String()
}
