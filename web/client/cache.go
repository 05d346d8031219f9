package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Cache is a local response cache in a directory: for each URL a body file
// and a JSON file with its validators. A cached URL is fetched with
// If-None-Match / If-Modified-Since; a 304 answer means the cached body is
// still good.
type Cache struct {
	dir string
}

// OpenCache returns a cache in dir, creating the directory.
func OpenCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("client: cache: %w", err)
	}
	return &Cache{dir: dir}, nil
}

type cacheEntry struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	ContentType  string `json:"content_type,omitempty"`
	body         []byte
}

func (c *Cache) key(u string) string {
	h := sha256.Sum256([]byte(u))
	return filepath.Join(c.dir, hex.EncodeToString(h[:16]))
}

func (c *Cache) lookup(u string) *cacheEntry {
	k := c.key(u)
	meta, err := os.ReadFile(k + ".json")
	if err != nil {
		return nil
	}
	var e cacheEntry
	if json.Unmarshal(meta, &e) != nil || e.URL != u {
		return nil
	}
	if e.body, err = os.ReadFile(k + ".body"); err != nil {
		return nil
	}
	return &e
}

func (c *Cache) store(u string, resp *http.Response, body []byte) error {
	e := cacheEntry{URL: u, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), ContentType: resp.Header.Get("Content-Type")}
	if (e.ETag == "" && e.LastModified == "") || strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		return nil
	}
	k := c.key(u)
	meta, _ := json.Marshal(e)
	if err := os.WriteFile(k+".body", body, 0o644); err != nil {
		return fmt.Errorf("client: cache: %w", err)
	}
	if err := os.WriteFile(k+".json", meta, 0o644); err != nil {
		return fmt.Errorf("client: cache: %w", err)
	}
	return nil
}
