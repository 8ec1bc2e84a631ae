package elasticsearch

import "encoding/json"

// jaegerTemplates are the composable index templates of the span and
// service indices: the mappings of Jaeger's own ES 8 templates
// (jaeger-span-8.json, jaeger-service-8.json), so that Jaeger's reader
// finds what it queries: keywords for the exact term queries (traceID,
// serviceName, operationName) and the terms aggregations of the service
// list, longs for the startTime sort and the duration range, a date for
// startTimeMillis, and nested tags, references and logs for tag search.
//
// Servers imitating Elasticsearch accept these too where they accept
// templates at all (ZincSearch maps the keywords and numbers and ignores
// nested, object and dynamic_templates); shard and replica counts are
// left to the cluster's defaults.
func jaegerTemplates(names jaegerIndexNames) ([]indexTemplate, error) {
	// Jaeger's keyword limit: longer values stay in _source but are not
	// indexed, so one huge tag cannot fail a document.
	keyword := map[string]any{"type": "keyword", "ignore_above": 256}
	kv := map[string]any{
		"type":    "nested",
		"dynamic": false,
		"properties": map[string]any{
			"key":   keyword,
			"value": keyword,
			"type":  keyword,
		},
	}
	// Jaeger's writer can also store chosen tags as plain fields under
	// tag.* (tags_as_fields); kept so that both writers can share indices.
	dynamic := []map[string]any{
		{"span_tags_map": map[string]any{"mapping": keyword, "path_match": "tag.*"}},
		{"process_tags_map": map[string]any{"mapping": keyword, "path_match": "process.tag.*"}},
	}
	settings := map[string]any{
		"index.mapping.nested_fields.limit": 50,
		"index.requests.cache.enable":       true,
	}
	span := map[string]any{
		"traceID":         keyword,
		"spanID":          keyword,
		"parentSpanID":    keyword,
		"operationName":   keyword,
		"startTime":       map[string]any{"type": "long"},
		"startTimeMillis": map[string]any{"type": "date", "format": "epoch_millis"},
		"duration":        map[string]any{"type": "long"},
		"flags":           map[string]any{"type": "integer"},
		"references": map[string]any{
			"type":    "nested",
			"dynamic": false,
			"properties": map[string]any{
				"refType": keyword,
				"traceID": keyword,
				"spanID":  keyword,
			},
		},
		"tags": kv,
		"tag":  map[string]any{"type": "object"},
		"logs": map[string]any{
			"type":    "nested",
			"dynamic": false,
			"properties": map[string]any{
				"timestamp": map[string]any{"type": "long"},
				"fields":    kv,
			},
		},
		"process": map[string]any{
			"properties": map[string]any{
				"serviceName": keyword,
				"tags":        kv,
				"tag":         map[string]any{"type": "object"},
			},
		},
	}
	service := map[string]any{
		"serviceName":   keyword,
		"operationName": keyword,
	}
	var out []indexTemplate
	for _, t := range []struct {
		prefix     string
		properties map[string]any
	}{{names.span, span}, {names.service, service}} {
		body, err := json.Marshal(map[string]any{
			"index_patterns": []string{t.prefix + "*"},
			// Above the built-in templates (100) and Jaeger's own (0 unless
			// configured): two overlapping templates of one priority fail
			// the install. The names are Jaeger's, so where Jaeger installs
			// its templates too, one replaces the other (same mappings).
			"priority": 200,
			"template": map[string]any{
				"settings": settings,
				"mappings": map[string]any{
					"dynamic_templates": dynamic,
					"properties":        t.properties,
				},
			},
		})
		if err != nil {
			return nil, err
		}
		name := t.prefix[:len(t.prefix)-1] // "jaeger-span-" → "jaeger-span"
		out = append(out, indexTemplate{name: name, body: body, patterns: t.prefix + "*"})
	}
	return out, nil
}
