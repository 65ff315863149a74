//! The link's gRPC transport, written out where tonic would copy or hold memory: each frame
//! goes out as the pieces it was built from, so a province's 161 copies of a 50,000-rule
//! blacklist share one buffer instead of each being copied whole into its own stream's; and
//! each frame comes in through a buffer of its own size, freed once decoded, where tonic's
//! stream keeps one as large as the largest frame it ever saw (bench/HISTORY.md, "Bulk").
//!
//! On the wire nothing changes: `Link/Open` is the service isms.proto declares, served
//! beside tonic's router and called through tonic's channel, and a peer built on tonic's
//! generated code talks to it unchanged.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::Body as _;
use isms_proto::Pieces;
use isms_proto::v1::Frame;
use prost::Message;
use prost::bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;

/// The one method of the link service.
pub const OPEN_PATH: &str = "/isms.v1.Link/Open";

/// Frames going out on one link, each as its pieces; an error ends the stream with that
/// status.
pub type Outbound = mpsc::Sender<Result<Pieces, Status>>;

/// Frames coming in on one link, decoded.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

/// What runs the parent's side of a link once `Link/Open` is called: the sessions
/// (`link::LinkService`). The transport only carries frames; it knows no session.
pub trait OpenLink: Clone + Send + 'static {
    /// Opens a session for the caller of `request` (its certificate, its address), its
    /// frames read from `inbound`; returns the frames to send back, or the status that
    /// refuses the call.
    fn open(
        &self,
        request: &tonic::Request<()>,
        inbound: FrameStream,
    ) -> Result<mpsc::Receiver<Result<Pieces, Status>>, Status>;
}

/// The parent's side of `Link/Open`, as the service tonic's router serves.
#[derive(Debug, Clone)]
pub struct LinkServer<S> {
    service: S,
    max_frame_bytes: usize,
}

impl<S: OpenLink> LinkServer<S> {
    pub fn new(service: S, max_frame_bytes: usize) -> Self {
        LinkServer {
            service,
            max_frame_bytes,
        }
    }
}

impl<S> tonic::server::NamedService for LinkServer<S> {
    const NAME: &'static str = "isms.v1.Link";
}

impl<S: OpenLink> Service<http::Request<Body>> for LinkServer<S> {
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
            let inbound = Inbound::new(body, max, Side::Parent);
            Ok(match service.open(&request, Box::pin(inbound)) {
                Ok(frames) => {
                    let body = FrameBody::new(frames, max, Side::Parent);
                    let mut response = http::Response::new(Body::new(body));
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

/// Which end of `Link/Open` a body belongs to: the parent's (the server's) response ends
/// with a status in its trailers; the child's request simply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Parent,
    Child,
}

/// A gRPC message body: each frame behind its five-byte message prefix, its large pieces
/// by reference; the parent's then ends with the trailers carrying the stream's status.
#[derive(Debug)]
struct FrameBody {
    frames: mpsc::Receiver<Result<Pieces, Status>>,
    max_frame_bytes: usize,
    side: Side,
    queued: VecDeque<Bytes>,
    /// The status to end with, once everything queued is out.
    ending: Option<Status>,
    ended: bool,
}

impl FrameBody {
    fn new(
        frames: mpsc::Receiver<Result<Pieces, Status>>,
        max_frame_bytes: usize,
        side: Side,
    ) -> Self {
        FrameBody {
            frames,
            max_frame_bytes,
            side,
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
                // A request has no trailers to carry a status: the child's session ends
                // its side by ending it, as it did through tonic's client.
                Some(Err(_)) if self.side == Side::Child => Some(Status::ok("")),
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
                if this.side == Side::Child {
                    // Only a frame over the limit is an error here: the stream is reset, as
                    // tonic's client does with a message it cannot encode.
                    return Poll::Ready((status.code() != tonic::Code::Ok).then_some(Err(status)));
                }
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
        // Set only once the trailers, or the end of a request, are out.
        self.ended
    }
}

/// Calls `Link/Open` on `channel` as tonic's generated client does (the same request,
/// headers and message framing), sending `frames` as their pieces until the channel ends or
/// yields an error; the parent's frames come back through the returned stream.
pub async fn open(
    mut channel: Channel,
    frames: mpsc::Receiver<Result<Pieces, Status>>,
    max_frame_bytes: usize,
) -> Result<Inbound, Status> {
    let body = Body::new(FrameBody::new(frames, max_frame_bytes, Side::Child));
    // The channel adds the scheme and authority of its endpoint.
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(OPEN_PATH)
        .version(http::Version::HTTP_2)
        .header(http::header::TE, "trailers")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(body)
        .map_err(|e| Status::internal(format!("link request: {e}")))?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::unavailable(format!("link not ready: {e}")))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    // A refusal comes as a status in the headers ("trailers only"), as tonic checks.
    let trailers_only = Status::from_header_map(response.headers());
    if let Some(status) = &trailers_only
        && status.code() != tonic::Code::Ok
    {
        return Err(status.clone());
    }
    if response.status() != http::StatusCode::OK {
        return Err(Status::unknown(format!(
            "link refused with HTTP status {}",
            response.status()
        )));
    }
    let mut inbound = Inbound::new(response.into_body(), max_frame_bytes, Side::Child);
    // An OK status in the headers is the whole response: a stream that ended at once, as
    // tonic reads it, not one that ended without a status.
    inbound.done = trailers_only.is_some();
    Ok(inbound)
}

/// The five bytes before each gRPC message: a compression flag and its length.
const PREFIX: usize = 5;

/// Frames coming in on one link. Each message is copied, as its data frames arrive, into a
/// buffer of exactly its size, decoded and dropped: a child of a province that once received
/// a 1.9 MB blacklist does not keep 1.9 MB for good, as it did in tonic's stream (the load
/// generator's 4,990 links held 9.7 GB after a bulk push). Data frames are released at once,
/// so HTTP/2's read buffers are reused rather than pinned by what was decoded from them.
pub struct Inbound {
    body: Body,
    max_frame_bytes: usize,
    side: Side,
    /// The prefix of the next message, as far as it has come.
    prefix: BytesMut,
    /// The message being filled, allocated at its full size, and that size.
    message: Option<(BytesMut, usize)>,
    /// Messages whole and not yet decoded, in order.
    whole: VecDeque<Bytes>,
    /// What ends the stream once the messages before it are out.
    failed: Option<Status>,
    done: bool,
}

impl Inbound {
    fn new(body: Body, max_frame_bytes: usize, side: Side) -> Self {
        Inbound {
            body,
            max_frame_bytes,
            side,
            prefix: BytesMut::with_capacity(PREFIX),
            message: None,
            whole: VecDeque::new(),
            failed: None,
            done: false,
        }
    }

    /// Takes in one data frame's bytes.
    fn receive(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            let Some((message, len)) = &mut self.message else {
                let n = data.len().min(PREFIX - self.prefix.len());
                self.prefix.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.prefix.len() == PREFIX {
                    self.begin()?;
                }
                continue;
            };
            let n = data.len().min(*len - message.len());
            message.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.end_if_whole();
        }
        Ok(())
    }

    /// Starts the message the prefix announces.
    fn begin(&mut self) -> Result<(), Status> {
        let p = &self.prefix;
        let (compressed, len) = (p[0], u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize);
        // Cleared, not split off: the next prefix reuses its five bytes.
        self.prefix.clear();
        if compressed != 0 {
            // Neither side asks for compression; tonic's decoder refuses it the same way.
            return Err(Status::internal(
                "a compressed frame, and no compression was agreed",
            ));
        }
        if len > self.max_frame_bytes {
            return Err(Status::out_of_range(format!(
                "frame of {len} bytes is over the limit of {}",
                self.max_frame_bytes
            )));
        }
        self.message = Some((BytesMut::with_capacity(len), len));
        self.end_if_whole();
        Ok(())
    }

    fn end_if_whole(&mut self) {
        if let Some((message, _)) = self.message.take_if(|(m, len)| m.len() == *len) {
            self.whole.push_back(message.freeze());
        }
    }

    /// How the stream ended, from its trailers (None: cleanly).
    fn ended(&mut self, trailers: Option<&http::HeaderMap>) -> Option<Result<Frame, Status>> {
        self.done = true;
        if self.message.is_some() || !self.prefix.is_empty() {
            return Some(Err(Status::internal(
                "the link stream ended inside a frame",
            )));
        }
        match (self.side, trailers.and_then(Status::from_header_map)) {
            (_, Some(status)) if status.code() == tonic::Code::Ok => None,
            (_, Some(status)) => Some(Err(status)),
            // A request ends without trailers.
            (Side::Parent, None) => None,
            // As tonic: a response must end with a status.
            (Side::Child, None) => Some(Err(Status::unknown(
                "the link stream ended without a status",
            ))),
        }
    }
}

impl Stream for Inbound {
    type Item = Result<Frame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(message) = this.whole.pop_front() {
                // As tonic's protobuf codec: an unparsable message is INTERNAL.
                let frame = Frame::decode(message).map_err(|e| Status::internal(e.to_string()));
                return Poll::Ready(Some(frame));
            }
            if let Some(status) = this.failed.take() {
                this.done = true;
                return Poll::Ready(Some(Err(status)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(transport_failed(&status))));
                }
                None => return Poll::Ready(this.ended(None)),
            };
            match frame.into_data() {
                Ok(data) => {
                    // The frames before a bad one are still delivered, as tonic's stream does.
                    if let Err(status) = this.receive(&data) {
                        this.failed = Some(status);
                    }
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    return Poll::Ready(this.ended(trailers.as_ref()));
                }
            }
        }
    }
}

/// A body that failed below the gRPC layer (the connection dropped, the stream was
/// reset): the peer went away, which its session treats as a normal end, not as a bad frame.
fn transport_failed(status: &Status) -> Status {
    Status::unavailable(format!("link transport failed: {}", status.message()))
}

#[cfg(test)]
mod tests;
