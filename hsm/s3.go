package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config says how to reach an S3-compatible store: the endpoint (empty
// for AWS itself), the region and static credentials.
type S3Config struct {
	Endpoint  string
	Region    string
	AccessKey string
	SecretKey string
}

// S3ConfigFromEnv reads the S3 settings of the environment: STRATA_S3_ENDPOINT
// or AWS_ENDPOINT_URL, AWS_REGION (default us-east-1), AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY. Fields of over that are set win.
func S3ConfigFromEnv(over S3Config) S3Config {
	c := S3Config{Endpoint: os.Getenv("STRATA_S3_ENDPOINT"), Region: os.Getenv("AWS_REGION"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
	if c.Endpoint == "" {
		c.Endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&c.Endpoint, over.Endpoint}, {&c.Region, over.Region},
		{&c.AccessKey, over.AccessKey}, {&c.SecretKey, over.SecretKey}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	return c
}

// s3Backend keeps objects in a bucket under a prefix; uploads of more than
// one part are multipart uploads with the parts sent in parallel.
type s3Backend struct {
	cl     *s3.Client
	bucket string
	prefix string
}

func openS3(spec string, cfg S3Config) (Backend, error) {
	rest := strings.TrimPrefix(spec, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return nil, fmt.Errorf("hsm: backend %q: no bucket", spec)
	}
	cfg = S3ConfigFromEnv(cfg)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	awsCfg := aws.Config{
		Region:      cfg.Region,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
		HTTPClient:  &http.Client{Transport: tr},
	}
	cl := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = true
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// Every part carries our own checksum (manifest.go); the SDK's
		// would cost a second pass over the data.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &s3Backend{cl: cl, bucket: bucket, prefix: strings.Trim(prefix, "/")}, nil
}

func (b *s3Backend) String() string { return "s3://" + joinKey(b.bucket, b.prefix) }

func (b *s3Backend) Root() string { return b.prefix }

// notFound reports whether err is S3's "no such key".
func notFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	var api smithy.APIError
	return errors.As(err, &nf) || errors.As(err, &nk) ||
		errors.As(err, &api) && (api.ErrorCode() == "NotFound" || api.ErrorCode() == "NoSuchKey")
}

// s3Upload is an object being uploaded: a single PUT for one part, else a
// multipart upload.
type s3Upload struct {
	b     *s3Backend
	key   string
	parts int
	id    string // multipart upload id; "" for a single PUT
	mu    sync.Mutex
	etags map[int32]string
	one   []byte // the single part
}

func (b *s3Backend) Create(ctx context.Context, key string, size, partSize int64) (Upload, error) {
	u := &s3Upload{b: b, key: key, parts: int((size + partSize - 1) / partSize), etags: map[int32]string{}}
	if u.parts <= 1 {
		return u, nil
	}
	out, err := b.cl.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("hsm: s3 create upload of %s: %w", key, err)
	}
	u.id = aws.ToString(out.UploadId)
	return u, nil
}

func (u *s3Upload) WritePart(ctx context.Context, index int, data []byte) error {
	if u.id == "" {
		u.one = slices.Clone(data)
		return nil
	}
	n := int32(index + 1)
	out, err := u.b.cl.UploadPart(ctx, &s3.UploadPartInput{Bucket: &u.b.bucket, Key: &u.key, UploadId: &u.id, PartNumber: &n,
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))})
	if err != nil {
		return fmt.Errorf("hsm: s3 upload part %d of %s: %w", n, u.key, err)
	}
	u.mu.Lock()
	u.etags[n] = aws.ToString(out.ETag)
	u.mu.Unlock()
	return nil
}

func (u *s3Upload) Commit(ctx context.Context) error {
	if u.id == "" {
		_, err := u.b.cl.PutObject(ctx, &s3.PutObjectInput{Bucket: &u.b.bucket, Key: &u.key, Body: bytes.NewReader(u.one),
			ContentLength: aws.Int64(int64(len(u.one)))})
		if err != nil {
			return fmt.Errorf("hsm: s3 put %s: %w", u.key, err)
		}
		return nil
	}
	var parts []types.CompletedPart
	for n := int32(1); n <= int32(u.parts); n++ {
		etag, ok := u.etags[n]
		if !ok {
			return fmt.Errorf("hsm: s3 upload of %s: part %d missing", u.key, n)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: aws.String(etag)})
	}
	_, err := u.b.cl.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &u.b.bucket, Key: &u.key,
		UploadId: &u.id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return fmt.Errorf("hsm: s3 complete upload of %s: %w", u.key, err)
	}
	return nil
}

func (u *s3Upload) Abort(ctx context.Context) error {
	if u.id == "" {
		return nil
	}
	_, err := u.b.cl.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &u.b.bucket, Key: &u.key, UploadId: &u.id})
	if err != nil {
		return fmt.Errorf("hsm: s3 abort upload of %s: %w", u.key, err)
	}
	return nil
}

func (b *s3Backend) ReadAt(ctx context.Context, key string, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)
	out, err := b.cl.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &key, Range: &rng})
	if notFound(err) {
		return fmt.Errorf("hsm: s3 get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("hsm: s3 get %s %s: %w", key, rng, err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, p); err != nil {
		return fmt.Errorf("hsm: s3 get %s %s: %w", key, rng, err)
	}
	return nil
}

func (b *s3Backend) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := b.cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &key})
	if notFound(err) {
		return ObjectInfo{}, fmt.Errorf("hsm: s3 head %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("hsm: s3 head %s: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), Mtime: aws.ToTime(out.LastModified),
		ETag: strings.Trim(aws.ToString(out.ETag), `"`)}, nil
}

func (b *s3Backend) Put(ctx context.Context, key string, data []byte) error {
	_, err := b.cl.PutObject(ctx, &s3.PutObjectInput{Bucket: &b.bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data)))})
	if err != nil {
		return fmt.Errorf("hsm: s3 put %s: %w", key, err)
	}
	return nil
}

func (b *s3Backend) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := b.cl.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &key})
	if notFound(err) {
		return nil, fmt.Errorf("hsm: s3 get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: s3 get %s: %w", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("hsm: s3 get %s: %w", key, err)
	}
	return data, nil
}

func (b *s3Backend) Delete(ctx context.Context, key string) error {
	if _, err := b.cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key}); err != nil && !notFound(err) {
		return fmt.Errorf("hsm: s3 delete %s: %w", key, err)
	}
	return nil
}

func (b *s3Backend) List(ctx context.Context, prefix string, fn func(ObjectInfo) bool) error {
	p := s3.NewListObjectsV2Paginator(b.cl, &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("hsm: s3 list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			info := ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Mtime: aws.ToTime(o.LastModified),
				ETag: strings.Trim(aws.ToString(o.ETag), `"`)}
			if !fn(info) {
				return nil
			}
		}
	}
	return nil
}
