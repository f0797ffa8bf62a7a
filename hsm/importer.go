package hsm

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// Import ("bucket link"): objects already in an archive become released
// stubs, restored on first access. The source is a prefix of the archive
// the copytool serves: keys of an S3 source are relative to its bucket (the
// copytool's backend must be that bucket), keys of a POSIX source are
// absolute paths.

// ListSource calls fn for every object under a source prefix
// ("s3://BUCKET/PREFIX", "posix:DIR" or "/DIR") with its path relative to
// the prefix and its description, whose Key is what the file's HSM state
// records.
func ListSource(ctx context.Context, spec string, s3 S3Config, fn func(rel string, info ObjectInfo) bool) error {
	switch {
	case strings.HasPrefix(spec, "s3://"):
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(spec, "s3://"), "/")
		b, err := openS3("s3://"+bucket, s3)
		if err != nil {
			return err
		}
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		return b.List(ctx, prefix, func(info ObjectInfo) bool {
			rel := strings.TrimPrefix(info.Key, prefix)
			if rel == "" || strings.HasSuffix(rel, "/") || strings.HasSuffix(rel, manifestSuffix) {
				return true
			}
			return fn(rel, info)
		})
	case strings.HasPrefix(spec, "posix:"), strings.HasPrefix(spec, "/"):
		dir := strings.TrimPrefix(spec, "posix:")
		b, err := openPosix(dir)
		if err != nil {
			return err
		}
		root := b.(*posixBackend).dir
		return b.List(ctx, "", func(info ObjectInfo) bool {
			rel := info.Key
			if strings.HasSuffix(rel, manifestSuffix) {
				return true
			}
			info.Key = filepath.Join(root, rel)
			return fn(rel, info)
		})
	}
	return fmt.Errorf("hsm: import source %q: want s3://BUCKET/PREFIX or posix:DIR", spec)
}
