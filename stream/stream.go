// Package stream is applayer's video streaming system (DASH): packaging
// real video with ffmpeg (stream/packager) into MPDs (stream/mpd) and
// fMP4 segments, an origin (stream/origin) served by web/server over
// HTTP/1.1, HTTP/2 and HTTP/3, and an adaptive player (stream/player with
// the ABR algorithms of stream/abr and the bandwidth shaping of
// stream/shape). This package puts the origin into a web server and
// declares the lab kind.
package stream

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/web/server"
)

// Server is a web server whose every site is the DASH origin of one
// directory.
type Server struct {
	*server.Server
	origin *origin.Origin
	once   sync.Once
	cerr   error
}

// NewServer builds the origin for oc.Dir inside a web server of cfg (its
// listeners, TLS, HTTP/3, limits, access log; cfg.Sites is replaced).
// Each wrap, when given, wraps the origin's handler (middleware).
func NewServer(cfg server.Config, oc origin.Config, deps service.Deps, wrap ...func(http.Handler) http.Handler) (*Server, error) {
	deps = deps.Defaults()
	o, err := origin.New(oc, deps)
	if err != nil {
		return nil, err
	}
	var h http.Handler = o
	for _, w := range wrap {
		h = w(h)
	}
	cfg.Sites = []server.Site{{Handler: h}}
	s, err := server.New(cfg, deps)
	if err != nil {
		o.Close()
		return nil, err
	}
	return &Server{Server: s, origin: o}, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "stream-origin" }

// Shutdown stops the web server and releases the directory.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.Server.Shutdown(ctx)
	s.once.Do(func() { s.cerr = s.origin.Close() })
	return errors.Join(err, s.cerr)
}
