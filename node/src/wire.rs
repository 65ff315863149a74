//! The link's gRPC transport, written out where tonic would copy: each frame goes out as the
//! pieces it was built from, so a province's 161 copies of a 50,000-rule blacklist share one
//! buffer instead of each being copied whole into its own stream's (BENCHMARKS.md, "Bulk").
//!
//! On the wire nothing changes: `Link/Open` is the service isms.proto declares, and a
//! child built on tonic's generated client (the load generator's) talks to it unchanged.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use isms_proto::Pieces;
use isms_proto::v1::Frame;
use prost::Message;
use prost::bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Status, Streaming};

use crate::link::LinkService;

/// The one method of the link service.
pub const OPEN_PATH: &str = "/isms.v1.Link/Open";

/// Frames going out on one link, each as its pieces; an error ends the stream with that
/// status.
pub type Outbound = mpsc::Sender<Result<Pieces, Status>>;

/// Decodes link frames, and encodes them from their pieces (the child's side, through
/// tonic's client, which copies them into its buffer; frames going up are small).
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Pieces;
    type Decode = Frame;
    type Encoder = FrameCodec;
    type Decoder = FrameCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for FrameCodec {
    type Item = Pieces;
    type Error = Status;

    fn encode(&mut self, item: Pieces, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        for piece in item.parts() {
            dst.put_slice(piece);
        }
        Ok(())
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Frame>, Status> {
        // As tonic's own protobuf codec: an unparsable message is INTERNAL.
        Frame::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// The parent's side of `Link/Open`, as the service tonic's router serves.
#[derive(Debug, Clone)]
pub struct LinkServer {
    service: LinkService,
    max_frame_bytes: usize,
}

impl LinkServer {
    pub fn new(service: LinkService, max_frame_bytes: usize) -> Self {
        LinkServer {
            service,
            max_frame_bytes,
        }
    }
}

impl tonic::server::NamedService for LinkServer {
    const NAME: &'static str = "isms.v1.Link";
}

impl tower::Service<http::Request<Body>> for LinkServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.service.clone();
        let max = self.max_frame_bytes;
        Box::pin(async move {
            if request.uri().path() != OPEN_PATH {
                let path = request.uri().path().to_string();
                return Ok(Status::unimplemented(format!("no method {path}")).into_http());
            }
            let (parts, body) = request.into_parts();
            let request = tonic::Request::from_http(http::Request::from_parts(parts, ()));
            let inbound = Streaming::new_request(FrameCodec, body, None, Some(max));
            Ok(match service.open(&request, Box::pin(inbound)) {
                Ok(frames) => {
                    let mut response = http::Response::new(Body::new(FrameBody::new(frames, max)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    response
                }
                Err(status) => status.into_http(),
            })
        })
    }
}

/// A piece at least this large is passed on as it is; smaller ones are gathered into one
/// buffer with their neighbours, so a frame is a few HTTP/2 data frames, not dozens.
const SHARED_PIECE: usize = 4096;

/// Frames ready at once are gathered into one data frame up to this size, as tonic's
/// encoder gathers them.
const GATHER: usize = 32 << 10;

/// A gRPC response body: each frame behind its five-byte message prefix, its large pieces
/// by reference, then the trailers with the status the stream ended with.
#[derive(Debug)]
struct FrameBody {
    frames: mpsc::Receiver<Result<Pieces, Status>>,
    max_frame_bytes: usize,
    queued: VecDeque<Bytes>,
    /// The status to end with, once everything queued is out.
    ending: Option<Status>,
    ended: bool,
}

impl FrameBody {
    fn new(frames: mpsc::Receiver<Result<Pieces, Status>>, max_frame_bytes: usize) -> Self {
        FrameBody {
            frames,
            max_frame_bytes,
            queued: VecDeque::new(),
            ending: None,
            ended: false,
        }
    }

    /// Queues `first` and whatever else is ready, until a status ends the stream.
    fn gather(&mut self, first: Option<Result<Pieces, Status>>) {
        let mut small = BytesMut::with_capacity(SHARED_PIECE);
        let mut next = first;
        loop {
            let end = match next {
                Some(Ok(frame)) => self.queue(frame, &mut small).err(),
                Some(Err(status)) => Some(status),
                None => Some(Status::ok("")),
            };
            if let Some(status) = end {
                self.ending = Some(status);
                // The sender is done with this stream: no frame after the status.
                self.frames.close();
                break;
            }
            if small.len() >= GATHER {
                break;
            }
            next = match self.frames.try_recv() {
                Ok(frame) => Some(frame),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
        }
        if !small.is_empty() {
            self.queued.push_back(small.freeze());
        }
    }

    /// Appends `frame`'s message prefix and small pieces to `small`, queueing it before
    /// each large piece; a frame over the limit is an error, as tonic's encoder makes it.
    fn queue(&mut self, frame: Pieces, small: &mut BytesMut) -> Result<(), Status> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|_| frame.len() <= self.max_frame_bytes)
            .ok_or_else(|| {
                Status::out_of_range(format!(
                    "frame of {} bytes is over the limit of {}",
                    frame.len(),
                    self.max_frame_bytes
                ))
            })?;
        // Uncompressed, then the length.
        small.put_u8(0);
        small.put_u32(len);
        for piece in frame.into_parts() {
            if piece.len() < SHARED_PIECE {
                small.extend_from_slice(&piece);
                continue;
            }
            if !small.is_empty() {
                self.queued.push_back(small.split().freeze());
            }
            self.queued.push_back(piece);
        }
        Ok(())
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            if let Some(data) = this.queued.pop_front() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
            }
            if let Some(status) = this.ending.take() {
                this.ended = true;
                let mut trailers = http::HeaderMap::new();
                if let Err(bad) = status.add_header(&mut trailers) {
                    // A message that cannot be a header value: the code alone still goes out.
                    trailers.clear();
                    let _ = Status::new(bad.code(), "").add_header(&mut trailers);
                }
                return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let first = ready!(this.frames.poll_recv(cx));
            this.gather(first);
        }
    }

    fn is_end_stream(&self) -> bool {
        // Set only once the trailers, the last of it, are out.
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use isms_proto::v1::{Ack, Envelope, frame};

    fn ack(applied: u64) -> Pieces {
        Pieces::encode(&Frame {
            body: Some(frame::Body::Ack(Ack { applied })),
        })
    }

    /// Everything `body` yields: its data joined, its trailers.
    async fn drain(body: FrameBody) -> (Vec<Bytes>, Bytes, http::HeaderMap) {
        let mut body = Box::pin(body);
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("no body error");
            match frame.into_data() {
                Ok(d) => data.push(d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        let joined = Bytes::from(data.concat());
        (data, joined, trailers.expect("trailers"))
    }

    /// The gRPC messages in `bytes`, each after its prefix.
    fn messages(mut bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], 0, "uncompressed");
            let len = u32::from_be_bytes(bytes[1..5].try_into().expect("prefix")) as usize;
            out.push(Frame::decode(&bytes[5..5 + len]).expect("a frame"));
            bytes = &bytes[5 + len..];
        }
        out
    }

    #[tokio::test]
    async fn frames_go_out_prefixed_with_large_pieces_shared_then_an_ok_status() {
        let rules = Bytes::from(vec![0x42; 3 * SHARED_PIECE]);
        let head = Envelope {
            seq: 1,
            id: "d1".into(),
            ..Default::default()
        };
        let copy = isms_proto::directive_envelope(&head, &rules, &["enterprise/e1".into()]);
        let batch = isms_proto::batch_frame(vec![copy], 7);
        let whole = batch.to_bytes();
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(ack(3))).await.expect("queued");
        tx.send(Ok(batch)).await.expect("queued");
        drop(tx);
        let (data, joined, trailers) = drain(FrameBody::new(rx, 1 << 20)).await;
        assert!(
            data.iter().any(|d| d.as_ptr() == rules.as_ptr()),
            "the rules go out by reference"
        );
        let frames = messages(&joined);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], Frame::decode(whole).expect("decodes"));
        assert_eq!(frames[0].encode_to_vec(), ack(3).to_bytes());
        assert_eq!(trailers["grpc-status"], "0");
        // Ready together: the ack and the batch's head in one data frame, then the rules,
        // then the batch's tail.
        assert_eq!(data.len(), 3);
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_with_its_status_and_nothing_after_it() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(ack(1))).await.expect("queued");
        tx.send(Err(Status::invalid_argument("undecodable envelope")))
            .await
            .expect("queued");
        let (_, joined, trailers) = drain(FrameBody::new(rx, 1 << 20)).await;
        assert_eq!(messages(&joined).len(), 1);
        assert_eq!(trailers["grpc-status"], "3");
        // Percent-encoded, as gRPC carries messages.
        assert_eq!(trailers["grpc-message"], "undecodable%20envelope");
        assert!(
            tx.send(Ok(ack(2))).await.is_err(),
            "closed after the status"
        );
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_not_sent() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(Pieces::from(Bytes::from(vec![0; 100]))))
            .await
            .expect("queued");
        let (_, joined, trailers) = drain(FrameBody::new(rx, 64)).await;
        assert!(joined.is_empty());
        assert_eq!(trailers["grpc-status"], "11");
    }
}
