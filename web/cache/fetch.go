package cache

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// miss answers a request with no usable stored response. Concurrent
// misses for one URI are coalesced: the first fetches, the others wait
// for it and are then served from the cache, or fetch on their own when
// the response was not stored; when the fetch fails they fail too instead
// of hammering a broken origin.
func (c *Cache) miss(w http.ResponseWriter, r *http.Request, key string, reqCC *Directives, status string) {
	_, auth := r.Header["Authorization"]
	if r.Method != http.MethodGet || reqCC.NoStore() || auth {
		c.fetch(w, r, key, reqCC, status, nil)
		return
	}
	c.fmu.Lock()
	if f, ok := c.flights[key]; ok {
		c.fmu.Unlock()
		f.waiters.Add(1)
		t := time.NewTimer(c.cfg.FetchTimeout.D())
		defer t.Stop()
		select {
		case <-f.done:
		case <-r.Context().Done():
			return
		case <-t.C:
			c.badGateway(w, status+"; "+csDetailColl, context.DeadlineExceeded)
			return
		}
		if f.err != nil {
			c.badGateway(w, status+"; "+csDetailColl, f.err)
			return
		}
		if f.stored {
			if e, _ := c.lookup(key, r.Header); e != nil {
				c.st.hits.Add(1)
				c.serveEntry(w, r, e, c.now(), csHit+"; "+csDetailColl, false)
				return
			}
		}
		c.fetch(w, r, key, reqCC, status, nil)
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.fmu.Unlock()
	defer func() {
		c.fmu.Lock()
		delete(c.flights, key)
		c.fmu.Unlock()
		close(f.done)
	}()
	c.fetch(w, r, key, reqCC, status, f)
}

// stripClientConditionals removes the client's validators and range so the
// origin sends the complete response, which the cache stores and then
// answers those headers from.
func stripClientConditionals(h http.Header) {
	delete(h, "If-None-Match")
	delete(h, "If-Modified-Since")
	delete(h, "If-Range")
	delete(h, "Range")
}

func (c *Cache) fetch(w http.ResponseWriter, r *http.Request, key string, reqCC *Directives, status string, f *flight) {
	out, cancel := c.outbound(r)
	defer cancel()
	if r.Method == http.MethodGet {
		stripClientConditionals(out.Header)
	}
	reqTime := c.now()
	res, err := c.roundTrip(out)
	if err != nil {
		if f != nil {
			f.err = err
		}
		c.st.misses.Add(1)
		c.badGateway(w, status, err)
		return
	}
	defer res.Body.Close()
	c.finish(w, r, key, reqCC, res, reqTime, c.now(), status, f, nil)
}

// finish handles a full response from the origin: stores it when allowed
// (replacing old, if given) and streams it to the client.
func (c *Cache) finish(w http.ResponseWriter, r *http.Request, key string, reqCC *Directives, res *http.Response,
	reqTime, respTime time.Time, status string, f *flight, old *entry) {
	c.st.misses.Add(1)
	cc := ParseCacheControl(res.Header)
	if _, ok := res.Header["Date"]; !ok {
		res.Header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	getReq := r
	if r.Method == http.MethodHead {
		// a HEAD request validated with GET: the GET response may be stored
		g := *r
		g.Method = http.MethodGet
		getReq = &g
	}
	ok := storable(getReq, reqCC, res.StatusCode, res.Header, &cc) && res.ContentLength <= c.cfg.MaxObjectBytes
	var e *entry
	if ok {
		e = c.newEntry(key, r, res, reqTime, respTime)
		ok = e.lifetime > 0 || e.etag != "" || e.lastMod != ""
	}
	if !ok {
		if old != nil && res.StatusCode < 500 {
			c.invalidate(old.key)
		}
		c.stream(w, r, res, status, nil)
		return
	}
	if needsWholeBody(r) || r.Method == http.MethodHead {
		body, err := io.ReadAll(io.LimitReader(res.Body, c.cfg.MaxObjectBytes+1))
		if err == nil && int64(len(body)) <= c.cfg.MaxObjectBytes {
			c.st.bytesOrigin.Add(int64(len(body)))
			e.body = body
			c.store(e)
			if f != nil {
				f.stored = true
			}
			c.serveEntry(w, r, e, c.now(), status+"; stored", false)
			return
		}
		res.Body = io.NopCloser(io.MultiReader(bytesReader(body), res.Body))
		c.stream(w, r, res, status, nil)
		return
	}
	var body []byte
	c.stream(w, r, res, status+"; stored", &body)
	if body != nil {
		e.body = body
		c.store(e)
		if f != nil {
			f.stored = true
		}
	}
}

// needsWholeBody reports requests the cache answers from the stored
// object rather than by streaming: conditional and range requests.
func needsWholeBody(r *http.Request) bool {
	h := r.Header
	return h.Get("Range") != "" || h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != ""
}

type byteReader struct {
	b []byte
}

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesReader(b []byte) io.Reader { return &byteReader{b} }

// newEntry builds the entry for a storable response, computing
// corrected_initial_age (RFC 9111 section 4.2.3).
func (c *Cache) newEntry(key string, r *http.Request, res *http.Response, reqTime, respTime time.Time) *entry {
	h := res.Header.Clone()
	cc := ParseCacheControl(h)
	for _, f := range cc.PrivateFields {
		delete(h, f)
	}
	for _, f := range cc.NoCacheFields {
		delete(h, f)
	}
	ageValue, _ := parseAge(h)
	delete(h, "Age")
	names, _ := varyNames(h)
	e := &entry{key: key, varyNames: names, vkey: VaryKey(names, r.Header), status: res.StatusCode, header: h,
		reqTime: reqTime, respTime: respTime}
	e.corrInitAge = correctedInitialAge(h, ageValue, reqTime, respTime)
	c.derive(e)
	return e
}

func correctedInitialAge(h http.Header, ageValue int64, reqTime, respTime time.Time) time.Duration {
	var apparent time.Duration
	if ds := h["Date"]; len(ds) > 0 {
		if date, err := http.ParseTime(ds[0]); err == nil {
			apparent = respTime.Sub(date)
		}
	}
	if apparent < 0 {
		apparent = 0
	}
	delay := respTime.Sub(reqTime)
	if delay < 0 {
		delay = 0
	}
	corrected := time.Duration(ageValue)*time.Second + delay
	if apparent > corrected {
		return apparent
	}
	return corrected
}

func (c *Cache) store(e *entry) {
	if e.size() > c.cfg.MaxBytes/2 {
		return // would evict most of the cache
	}
	c.mem.put(e)
	if c.disk != nil {
		if err := c.disk.put(e); err != nil {
			c.log.Warn("disk tier write failed", "key", e.key, "err", err)
		}
	}
}

// updated returns a copy of e with its header updated from a 304 response
// (RFC 9111 sections 3.2 and 4.3.4): every field of the 304 replaces the
// stored one, except Content-Length and the hop-by-hop fields (already
// removed); the age is recomputed from the 304.
func (c *Cache) updated(e *entry, res *http.Response, reqTime, respTime time.Time) *entry {
	h := e.header.Clone()
	for k, v := range res.Header {
		switch k {
		case "Content-Length", "Age", "Cache-Status":
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	if _, ok := res.Header["Date"]; !ok {
		h["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	ageValue, _ := parseAge(res.Header)
	ne := &entry{key: e.key, vkey: e.vkey, varyNames: e.varyNames, status: e.status, header: h, body: e.body,
		reqTime: reqTime, respTime: respTime}
	ne.corrInitAge = correctedInitialAge(res.Header, ageValue, reqTime, respTime)
	c.derive(ne)
	return ne
}

// validate sends a conditional request for a stored response that may not
// be used without validation (RFC 9111 section 4.3).
func (c *Cache) validate(w http.ResponseWriter, r *http.Request, e *entry, reqCC *Directives, why string, staleness time.Duration) {
	out, cancel := c.outbound(r)
	defer cancel()
	out.Method = http.MethodGet
	stripClientConditionals(out.Header)
	conditional(out.Header, e)
	reqTime := c.now()
	res, err := c.roundTrip(out)
	respTime := c.now()
	failed := err != nil
	if res != nil {
		switch res.StatusCode {
		case 500, 502, 503, 504:
			failed = true
		}
	}
	if failed && c.staleIfError(e, reqCC, staleness) {
		code := "error"
		if res != nil {
			code = strconv.Itoa(res.StatusCode)
			res.Body.Close()
		}
		c.st.stale.Add(1)
		c.st.hits.Add(1)
		c.serveEntry(w, r, e, c.now(), csStale+"; fwd-status="+code+"; detail=stale-if-error", true)
		return
	}
	if err != nil {
		if e.mustRevalidate() {
			c.gatewayTimeoutErr(w, why)
			return
		}
		c.badGateway(w, why, err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotModified && !sameValidator(res.Header.Get("Etag"), e.etag) {
		// The 304 is about another representation (section 4.3.4): the
		// stored one can't be updated from it; fetch it whole instead.
		c.invalidate(e.key)
		c.fetch(w, r, e.key, reqCC, why, nil)
		return
	}
	if res.StatusCode == http.StatusNotModified {
		ne := c.updated(e, res, reqTime, respTime)
		if !c.mem.replace(e, ne) {
			c.mem.put(ne)
		}
		if c.disk != nil {
			c.disk.put(ne)
		}
		c.st.revalidated.Add(1)
		c.serveEntry(w, r, ne, respTime, why+"; fwd-status=304", false)
		return
	}
	c.finish(w, r, e.key, reqCC, res, reqTime, respTime, why+"; fwd-status="+strconv.Itoa(res.StatusCode), nil, e)
}

func (c *Cache) gatewayTimeoutErr(w http.ResponseWriter, why string) {
	w.Header()["Cache-Status"] = []string{c.cfg.Name + "; " + why + "; detail=must-revalidate"}
	http.Error(w, "504 origin unreachable and the stored response must be revalidated", http.StatusGatewayTimeout)
}

// sameValidator reports whether a 304's ETag (if any) selects the stored
// response with ETag stored (weak comparison).
func sameValidator(got, stored string) bool {
	if got == "" || stored == "" {
		return true
	}
	return strings.TrimPrefix(got, "W/") == strings.TrimPrefix(stored, "W/")
}

// conditional adds the validators of e to a request header.
func conditional(h http.Header, e *entry) {
	if e.etag != "" {
		h["If-None-Match"] = []string{e.etag}
	}
	if e.lastMod != "" {
		h["If-Modified-Since"] = []string{e.lastMod}
	}
}

// staleIfError reports whether RFC 5861's stale-if-error lets e be served
// after a failed validation.
func (c *Cache) staleIfError(e *entry, reqCC *Directives, staleness time.Duration) bool {
	if e.mustRevalidate() || e.cc.NoCache() {
		return false
	}
	if s := e.cc.StaleIfError; s >= 0 && staleness <= time.Duration(s)*time.Second {
		return true
	}
	if s := reqCC.StaleIfError; s >= 0 && staleness <= time.Duration(s)*time.Second {
		return true
	}
	return false
}

// revalidateInBackground validates e while the stale response is served
// (stale-while-revalidate); one background validation per URI at a time.
func (c *Cache) revalidateInBackground(r *http.Request, e *entry) {
	c.fmu.Lock()
	if c.reval[e.key] || c.closed.Load() {
		c.fmu.Unlock()
		return
	}
	c.reval[e.key] = true
	c.bg.Add(1)
	c.fmu.Unlock()
	ctx, cancel := context.WithTimeout(c.bgCtx, c.cfg.FetchTimeout.D())
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Method = http.MethodGet
	if out.URL.Scheme == "" {
		out.URL.Scheme = "http"
	}
	if out.URL.Host == "" {
		out.URL.Host = r.Host
	}
	RemoveHopByHop(out.Header)
	stripClientConditionals(out.Header)
	conditional(out.Header, e)
	go func() {
		defer c.bg.Done()
		defer cancel()
		defer func() {
			c.fmu.Lock()
			delete(c.reval, e.key)
			c.fmu.Unlock()
		}()
		reqTime := c.now()
		res, err := c.roundTrip(out)
		if err != nil {
			return
		}
		defer res.Body.Close()
		respTime := c.now()
		if res.StatusCode == http.StatusNotModified {
			ne := c.updated(e, res, reqTime, respTime)
			if c.mem.replace(e, ne) && c.disk != nil {
				c.disk.put(ne)
			}
			c.st.revalidated.Add(1)
			return
		}
		cc := ParseCacheControl(res.Header)
		noCC := Directives{MaxAge: -1, SMaxAge: -1, MaxStale: -1, MinFresh: -1, StaleIfError: -1, StaleWhileRevalidate: -1}
		if !storable(out, &noCC, res.StatusCode, res.Header, &cc) || res.ContentLength > c.cfg.MaxObjectBytes {
			if res.StatusCode < 500 {
				c.invalidate(e.key)
			}
			return
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, c.cfg.MaxObjectBytes+1))
		if err != nil || int64(len(body)) > c.cfg.MaxObjectBytes {
			return
		}
		c.st.bytesOrigin.Add(int64(len(body)))
		if _, ok := res.Header["Date"]; !ok {
			res.Header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
		}
		ne := c.newEntry(e.key, out, res, reqTime, respTime)
		ne.body = body
		c.store(ne)
	}()
}
