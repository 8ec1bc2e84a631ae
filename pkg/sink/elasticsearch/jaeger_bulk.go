package elasticsearch

import (
	"strconv"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// JaegerBulkBodies are the _bulk request bodies that a fresh Jaeger sink
// of cfg sends for recs written in batches of batchRecords records: the
// same conversion, the same action lines and the same service documents
// (once per day, service and operation), split at cfg.FlushBytes. It lets
// make bench write exactly the sink's documents straight into a server,
// to set the sink against a plain bulk client.
func JaegerBulkBodies(cfg JaegerConfig, recs []ingester.Record, batchRecords int) (bodies [][]byte, docs int, err error) {
	enc := newJaegerEncoder(jaegerIndices(cfg.IndexPrefix), cfg.MaxDecodedBytes)
	cache := newServiceCache(max(cfg.ServiceCacheSize, 1))
	for len(recs) > 0 {
		n := min(batchRecords, len(recs))
		ds, keys, err := enc.encode(recs[:n], cache)
		if err != nil {
			return nil, 0, err
		}
		cache.add(keys)
		bodies = appendBulkBodies(bodies, ds, cfg.FlushBytes)
		docs += len(ds)
		recs = recs[n:]
	}
	return bodies, docs, nil
}

// appendBulkBodies appends docs as NDJSON _bulk bodies of at most
// flushBytes each (a larger document goes alone).
func appendBulkBodies(bodies [][]byte, docs []document, flushBytes int) [][]byte {
	var cur []byte
	for i := range docs {
		d := &docs[i]
		line := appendBulkAction(nil, d)
		if len(cur) > 0 && len(cur)+len(line)+len(d.body)+1 > flushBytes {
			bodies, cur = append(bodies, cur), nil
		}
		cur = append(cur, line...)
		cur = append(cur, d.body...)
		cur = append(cur, '\n')
	}
	if len(cur) > 0 {
		bodies = append(bodies, cur)
	}
	return bodies
}

// appendBulkAction appends d's "index" action line (with its newline).
func appendBulkAction(b []byte, d *document) []byte {
	b = append(b, `{"index":{"_id":`...)
	b = strconv.AppendQuote(b, d.id)
	b = append(b, `,"_index":`...)
	b = strconv.AppendQuote(b, d.index)
	return append(b, "}}\n"...)
}
