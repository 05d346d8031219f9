package cache

import (
	"context"
	"io"
	"net/http"
	"slices"
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
	if r.Method != http.MethodGet || reqCC.NoStore() || auth || c.passRange(r, key) {
		c.fetch(w, r, key, reqCC, status, nil)
		return
	}
	c.fmu.Lock()
	if f, ok := c.flights[key]; ok {
		c.fmu.Unlock()
		f.waiters.Add(1)
		t := time.NewTimer(c.cfg.FetchTimeout.D())
		defer t.Stop()
		follow := f.ready
		if needsWholeBody(r) {
			follow = nil // answered from the stored object
		}
		select {
		case <-follow:
			if c.follow(w, r, f, status) {
				return
			}
			<-f.done
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
	f := newFlight()
	c.flights[key] = f
	c.fmu.Unlock()
	defer func() {
		c.fmu.Lock()
		delete(c.flights, key)
		c.fmu.Unlock()
		f.finish(streamFailed)
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
	_, auth := r.Header["Authorization"]
	if r.Method == http.MethodGet && !reqCC.NoStore() && !auth && !c.passRange(r, key) {
		// The complete response is fetched to be stored; the client's
		// conditionals and range are answered from it. Requests whose
		// response won't be stored keep them (a 206 or 304 passes
		// through), as do range requests for objects known to be too
		// large to store.
		stripClientConditionals(out.Header)
	}
	reqTime := c.now()
	out = forwardInterim(out, w)
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
	if r.Method == http.MethodHead {
		// A response to HEAD has no body to store, but freshens the
		// stored GET responses it selects (section 4.3.5).
		c.st.misses.Add(1)
		if res.StatusCode == http.StatusOK {
			c.freshenFromHead(r, res, reqTime, c.now())
		}
		c.stream(w, r, res, status, nil, nil)
		return
	}
	c.finish(w, r, key, reqCC, res, reqTime, c.now(), status, f, nil)
}

// finish handles a full response from the origin: stores it when allowed
// (replacing old, if given) and streams it to the client.
func (c *Cache) finish(w http.ResponseWriter, r *http.Request, key string, reqCC *Directives, res *http.Response,
	reqTime, respTime time.Time, status string, f *flight, old *entry) {
	c.st.misses.Add(1)
	cc, targeted := c.responseCC(res.Header)
	if _, ok := res.Header["Date"]; !ok {
		res.Header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	ok := storable(r, reqCC, res.StatusCode, res.Header, &cc, targeted)
	if ok && res.ContentLength > c.cfg.MaxObjectBytes {
		if old != nil {
			c.invalidate(old.key) // replaced by a response too large to store
		}
		if c.retryRange(w, r, key, res, status) {
			return
		}
		ok = false
	}
	var e *entry
	if ok {
		e = c.newEntry(key, r, res, reqTime, respTime)
		ok = e.lifetime > 0 || e.etag != "" || e.lastMod != ""
	}
	if !ok {
		if old != nil && res.StatusCode < 500 {
			c.invalidate(old.key)
		}
		c.stream(w, r, res, status, nil, nil)
		return
	}
	if needsWholeBody(r) {
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
		if err == nil && c.retryRange(w, r, key, res, status) {
			return
		}
		res.Body = io.NopCloser(io.MultiReader(bytesReader(body), res.Body))
		c.stream(w, r, res, status, nil, nil)
		return
	}
	var body []byte
	c.stream(w, r, res, status+"; stored", &body, f)
	if body != nil {
		e.body = body
		c.store(e)
		if f != nil {
			f.stored = true
		}
	}
}

// passRange reports whether r is a range request for an object recently
// found too large to store (over MaxObjectBytes): its Range is sent to the
// origin as is, so only the part asked for is transferred.
func (c *Cache) passRange(r *http.Request, key string) bool {
	if r.Header.Get("Range") == "" {
		return false
	}
	c.lmu.Lock()
	defer c.lmu.Unlock()
	t, ok := c.large[key]
	if ok && c.now().Sub(t) > largeMemo {
		delete(c.large, key)
		return false
	}
	return ok
}

// largeMemo is how long an object found too large to store makes range
// requests for it go to the origin with their Range.
const largeMemo = 10 * time.Minute

// retryRange handles a complete response too large to store that was
// fetched for a range request (whose Range was removed to fetch the
// object whole): the object is remembered as too large, the response
// dropped, and the request sent again with its Range and conditionals,
// so the origin sends the part asked for instead of all of it. It
// reports false, having done nothing, when r has no Range.
func (c *Cache) retryRange(w http.ResponseWriter, r *http.Request, key string, res *http.Response, status string) bool {
	if r.Header.Get("Range") == "" || r.Method != http.MethodGet || c.passRange(r, key) {
		return false // no range, or it was sent already (passRange)
	}
	c.lmu.Lock()
	if len(c.large) >= 10000 {
		clear(c.large)
	}
	c.large[key] = c.now()
	c.lmu.Unlock()
	res.Body.Close()
	out, cancel := c.outbound(r)
	defer cancel()
	res, err := c.roundTrip(out)
	if err != nil {
		c.badGateway(w, status, err)
		return true
	}
	defer res.Body.Close()
	c.stream(w, r, res, status+"; detail=too-large", nil, nil)
	return true
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
	cc, _ := c.responseCC(h)
	storedHeader(h, &cc)
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
	from := res.Header.Clone()
	cc, _ := c.responseCC(from)
	storedHeader(from, &cc) // a 304's cookie is for the validating client only
	for k, v := range from {
		switch k {
		case "Content-Length", "Age", "Cache-Status":
			continue
		}
		h[k] = v
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
// be used without validation (RFC 9111 section 4.3). A HEAD request is
// validated with HEAD: a 304 updates the stored responses as for GET, a
// 200 freshens or invalidates them (section 4.3.5).
func (c *Cache) validate(w http.ResponseWriter, r *http.Request, e *entry, reqCC *Directives, why string, staleness time.Duration) {
	out, cancel := c.outbound(r)
	defer cancel()
	head := r.Method == http.MethodHead
	out.Method = http.MethodGet
	if head {
		out.Method = http.MethodHead
	}
	stripClientConditionals(out.Header)
	sentTags := c.conditional(out.Header, e)
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
	if res.StatusCode == http.StatusNotModified {
		ne := c.notModified(e, res, sentTags, reqTime, respTime)
		if ne == nil {
			// The 304 selects no stored response (section 4.3.4): none
			// can be updated from it; fetch the response whole instead.
			res.Body.Close()
			c.invalidate(e.key)
			c.fetch(w, r, e.key, reqCC, why, nil)
			return
		}
		c.st.revalidated.Add(1)
		if sc, ok := res.Header["Set-Cookie"]; ok {
			w.Header()["Set-Cookie"] = sc // the validating client's own, never stored
		}
		c.serveEntry(w, r, ne, respTime, why+"; fwd-status=304", false)
		return
	}
	status := why + "; fwd-status=" + strconv.Itoa(res.StatusCode)
	if head {
		if res.StatusCode == http.StatusOK {
			c.freshenFromHead(r, res, reqTime, respTime)
		}
		c.stream(w, r, res, status, nil, nil)
		return
	}
	c.finish(w, r, e.key, reqCC, res, reqTime, respTime, status, nil, e)
}

// notModified applies a 304 received for a conditional request about e
// (sentTags entity tags were sent) to the stored responses it selects
// (RFC 9111 section 4.3.4) and returns the updated response to serve: e's
// update when e is selected, else the selected variant's. It returns nil
// when the 304 selects no stored response.
//
// Selection: a strong ETag selects every stored response of the URI with
// that ETag, across Vary variants; a weak ETag the most recent stored
// response that matches it weakly; with no ETag, a Last-Modified selects
// every stored response with that Last-Modified; with neither, the 304
// updates e when e was the only response asked about.
func (c *Cache) notModified(e *entry, res *http.Response, sentTags int, reqTime, respTime time.Time) *entry {
	vs := c.mem.variants(e.key)
	found := false
	for _, v := range vs {
		if v == e {
			found = true
		}
	}
	if !found {
		vs = append(vs, e)
	}
	etag, lm := res.Header.Get("Etag"), res.Header.Get("Last-Modified")
	var sel []*entry
	switch {
	case etag != "" && !strings.HasPrefix(etag, "W/"):
		for _, v := range vs {
			if v.etag == etag {
				sel = append(sel, v)
			}
		}
	case etag != "":
		var best *entry
		for _, v := range vs {
			if v.etag != "" && strings.TrimPrefix(v.etag, "W/") == strings.TrimPrefix(etag, "W/") &&
				(best == nil || v == e || best != e && v.moreRecent(best)) {
				best = v
			}
		}
		if best != nil {
			sel = []*entry{best}
		}
	case lm != "":
		for _, v := range vs {
			if v.lastMod == lm {
				sel = append(sel, v)
			}
		}
	case sentTags <= 1:
		sel = []*entry{e}
	}
	var serve *entry
	for _, v := range sel {
		nv := c.updated(v, res, reqTime, respTime)
		if !c.mem.replace(v, nv) {
			c.mem.put(nv)
		}
		if c.disk != nil {
			c.disk.put(nv)
		}
		if v == e || serve == nil {
			serve = nv
		}
	}
	return serve
}

// freshenFromHead applies a 200 response to a HEAD request to the stored
// GET responses the request could have selected (RFC 9111 section 4.3.5):
// when the validators it carries and its Content-Length match, the stored
// header is updated from it; otherwise the stored response is removed.
func (c *Cache) freshenFromHead(r *http.Request, res *http.Response, reqTime, respTime time.Time) {
	key := Key(r)
	etag, lm := res.Header.Get("Etag"), res.Header.Get("Last-Modified")
	for _, v := range c.mem.variants(key) {
		if len(v.varyNames) > 0 && VaryKey(v.varyNames, r.Header) != v.vkey {
			continue
		}
		match := (etag == "" || v.etag == etag) && (lm == "" || v.lastMod == lm) &&
			(res.ContentLength < 0 || res.ContentLength == int64(len(v.body)))
		if !match {
			c.mem.removeEntry(v)
			if c.disk != nil {
				c.disk.removeVariant(v.key, v.vkey)
			}
			continue
		}
		nv := c.updated(v, res, reqTime, respTime)
		if c.mem.replace(v, nv) && c.disk != nil {
			c.disk.put(nv)
		}
	}
}

func (c *Cache) gatewayTimeoutErr(w http.ResponseWriter, why string) {
	w.Header()["Cache-Status"] = []string{c.cfg.Name + "; " + why + "; detail=must-revalidate"}
	http.Error(w, "504 origin unreachable and the stored response must be revalidated", http.StatusGatewayTimeout)
}

// conditional adds the validators of e to a request header, with the
// entity tags of the URI's other stored variants, so the origin's 304 can
// select any of them (RFC 9111 section 4.3.1). It returns how many tags
// were sent.
func (c *Cache) conditional(h http.Header, e *entry) int {
	var tags []string
	if e.etag != "" {
		tags = append(tags, e.etag)
	}
	for _, v := range c.mem.variants(e.key) {
		if v.etag != "" && !slices.Contains(tags, v.etag) {
			tags = append(tags, v.etag)
		}
	}
	if len(tags) > 0 {
		h["If-None-Match"] = []string{strings.Join(tags, ", ")}
	}
	if e.lastMod != "" {
		h["If-Modified-Since"] = []string{e.lastMod}
	}
	return len(tags)
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
	out.Close = false
	out.Method = http.MethodGet
	if out.URL.Scheme == "" {
		out.URL.Scheme = "http"
	}
	if out.URL.Host == "" {
		out.URL.Host = r.Host
	}
	RemoveHopByHop(out.Header)
	stripClientConditionals(out.Header)
	sentTags := c.conditional(out.Header, e)
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
			if c.notModified(e, res, sentTags, reqTime, respTime) != nil {
				c.st.revalidated.Add(1)
			} else {
				c.invalidate(e.key)
			}
			return
		}
		cc, targeted := c.responseCC(res.Header)
		noCC := Directives{MaxAge: -1, SMaxAge: -1, MaxStale: -1, MinFresh: -1, StaleIfError: -1, StaleWhileRevalidate: -1}
		if !storable(out, &noCC, res.StatusCode, res.Header, &cc, targeted) || res.ContentLength > c.cfg.MaxObjectBytes {
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
