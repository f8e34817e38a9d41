//! The protobuf codec of every generated client and server: prost's, with
//! smaller per-call buffers.
//!
//! tonic allocates a codec buffer of `buffer_size` for each call up front,
//! 8 KiB by default, and keeps it for the life of a stream. An orchestrator
//! holding thousands of slow task streams pays it on each; the messages on
//! them are mostly heartbeats and status updates of a few dozen bytes. The
//! buffer still grows for a larger message (in `buffer_size` steps), so
//! only the idle cost changes. Measured by `cargo bench -p agentmesh-e2e
//! --bench capacity` (docs/BENCHMARKS.md).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial codec buffer of a call, bytes.
pub const CALL_BUFFER_BYTES: usize = 1024;

/// Bytes encoded before a stream yields to the transport (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// [`ProstCodec`] with [`CALL_BUFFER_BYTES`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(CALL_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
