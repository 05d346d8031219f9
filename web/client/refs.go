package client

import (
	"net/url"

	"github.com/applayer/applayer/web/htmlrefs"
)

// ExtractRefs returns the absolute http(s) URLs of the objects an HTML page
// references, resolved against base (or a <base href>), without
// duplicates, in document order (see htmlrefs.Extract).
func ExtractRefs(base *url.URL, page []byte) []*url.URL { return htmlrefs.Extract(base, page) }
