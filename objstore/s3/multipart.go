package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/floebroker/floe/objstore"
)

// maxParts is S3's limit on parts per upload.
const maxParts = 10000

// abortTimeout bounds the cleanup of a failed multipart upload, which runs
// even when the caller's context is done.
const abortTimeout = 30 * time.Second

type readerAtSeeker interface {
	io.ReaderAt
	io.Seeker
}

// sectionOf returns the size bytes of r from its current position as an
// io.SectionReader, if r supports random access, checking that they are
// all there. The SDK needs a seekable body to sign it over plain HTTP.
func sectionOf(r io.Reader, size int64) (*io.SectionReader, bool, error) {
	ras, ok := r.(readerAtSeeker)
	if !ok {
		return nil, false, nil
	}
	cur, err := ras.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, false, nil // not really seekable
	}
	end, err := ras.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, false, nil
	}
	if _, err := ras.Seek(cur, io.SeekStart); err != nil {
		return nil, false, fmt.Errorf("rewind body: %w", err)
	}
	if end-cur < size {
		return nil, false, fmt.Errorf("%w: got %d of %d bytes", objstore.ErrSizeMismatch, end-cur, size)
	}
	return io.NewSectionReader(ras, cur, size), true, nil
}

// seekableBody returns r's next size bytes as a seekable reader, copying
// them into memory unless r supports random access.
func seekableBody(ctx context.Context, r io.Reader, size int64) (io.ReadSeeker, error) {
	sec, ok, err := sectionOf(r, size)
	if err != nil {
		return nil, err
	}
	if ok {
		return sec, nil
	}
	buf, err := objstore.ReadFull(ctxReader{ctx, r}, size)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(buf), nil
}

// putMultipart uploads r in parts, at most PartConcurrency at once. The
// body is read sequentially, one part at a time, by this goroutine; a
// part's upload starts as soon as it is read. Any failure, including the
// caller's cancellation and a short body, aborts the upload.
func (b *Bucket) putMultipart(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	sec, random, err := sectionOf(r, size)
	if err != nil {
		return fmt.Errorf("s3: put %q: %w", key, err)
	}
	partSize := max(b.cfg.PartSize, (size+maxParts-1)/maxParts)
	nparts := int((size + partSize - 1) / partSize)

	created, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.cfg.Bucket, Key: &key})
	if err != nil {
		return opErr("put (create multipart upload)", key, err)
	}
	uploadID := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if _, aerr := b.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: &b.cfg.Bucket, Key: &key, UploadId: uploadID,
		}); aerr != nil {
			err = fmt.Errorf("%w (and aborting upload %s failed: %v)", err, aws.ToString(uploadID), mapErr(aerr))
		}
	}()

	parts := make([]types.CompletedPart, nparts)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(pctx)
	g.SetLimit(b.cfg.PartConcurrency)
	var readErr error
	for i := range nparts {
		off := int64(i) * partSize
		n := min(partSize, size-off)
		var body io.ReadSeeker
		if random {
			body = io.NewSectionReader(sec, off, n)
		} else {
			// Blocks in g.Go below when PartConcurrency parts are in
			// flight, so at most PartConcurrency+1 buffers exist.
			buf, rerr := objstore.ReadFull(ctxReader{gctx, r}, n)
			if rerr != nil {
				readErr = fmt.Errorf("part %d of %d: %w", i+1, nparts, rerr)
				cancel() // no point finishing the parts in flight
				break
			}
			body = bytes.NewReader(buf)
		}
		if gctx.Err() != nil {
			break // a part failed; Wait reports it
		}
		g.Go(func() error {
			out, err := b.client.UploadPart(gctx, &s3.UploadPartInput{
				Bucket:        &b.cfg.Bucket,
				Key:           &key,
				UploadId:      uploadID,
				PartNumber:    aws.Int32(int32(i + 1)),
				Body:          body,
				ContentLength: aws.Int64(n),
			})
			if err != nil {
				return opErr(fmt.Sprintf("put (upload part %d of %d)", i+1, nparts), key, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	werr := g.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("s3: put %q: %w", key, ctx.Err())
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return fmt.Errorf("s3: put %q: read body: %w", key, readErr)
	case werr != nil:
		return werr
	case readErr != nil:
		return fmt.Errorf("s3: put %q: read body: %w", key, readErr)
	}
	_, err = b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &b.cfg.Bucket,
		Key:             &key,
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return opErr("put (complete multipart upload)", key, err)
	}
	return nil
}

// ctxReader stops reading a body once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
