//! Property tests: decoding arbitrary or mutated bytes never panics and never allocates past the
//! frame limit. A counting global allocator records the largest single allocation made while
//! decoding, so "never allocates past the limit" is measured, not assumed.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot set up should fail loudly"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use caxton_ipc_protocol::{
    ChatMessage, ChatRole, CompletionRequest, HEADER_LEN, Hello, Job, JobAgent, JobInput,
    MAX_FRAME_LEN, PROTOCOL_VERSION, ProtocolError, SupervisorMessage, ToolCall, ToolResult,
    ToolSpec, WorkerMessage, decode_payload, encode_frame, read_frame,
};
use proptest::prelude::*;

struct Counting;

/// The largest allocation on this thread since it was last reset: per thread, so tests running
/// beside each other do not count each other's allocations.
struct Largest;

thread_local! {
    // `const` and `Cell<usize>`: no destructor to register, so using it inside the allocator
    // never allocates.
    static LARGEST_HERE: Cell<usize> = const { Cell::new(0) };
}

impl Largest {
    fn saw(size: usize) {
        let _ = LARGEST_HERE.try_with(|l| l.set(l.get().max(size)));
    }
    fn reset() {
        let _ = LARGEST_HERE.try_with(|l| l.set(0));
    }
    fn get() -> usize {
        LARGEST_HERE.try_with(Cell::get).unwrap_or(0)
    }
}

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Largest::saw(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Largest::saw(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn sample_frames() -> Vec<Vec<u8>> {
    let job = SupervisorMessage::Job(Box::new(Job {
        execution_id: "0192f0c1-aaaa-bbbb-cccc-000000000001".into(),
        agent: JobAgent {
            name: "data-analyzer".into(),
            version: "1.0.0".into(),
            system_prompt: "You are a data analysis expert.".into(),
            user_prompt_template: "Analyze: {{request}}".into(),
            parameters_json: r#"{"max_file_size":"10MB"}"#.into(),
            tools: vec![ToolSpec {
                name: "csv_stats".into(),
                description: "Column statistics".into(),
                input_schema_json: r#"{"type":"object"}"#.into(),
            }],
            max_tool_calls: 10,
        },
        input: JobInput {
            request: "sales.csv".into(),
            context: String::new(),
            requirements: "brief".into(),
            memory_context: "- Ada: likes tea".into(),
            ..JobInput::default()
        },
        stream: true,
    }));
    let complete = WorkerMessage::Complete {
        call_id: 7,
        request: CompletionRequest {
            messages: vec![
                ChatMessage::text(ChatRole::System, "sys"),
                ChatMessage::text(ChatRole::User, "hello"),
            ],
            tools: Vec::new(),
            stream: false,
        },
    };
    let hello = WorkerMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_version: "0.1.0".into(),
        pid: 1,
        sandbox: caxton_ipc_protocol::SandboxReport::default(),
    });
    let calls = WorkerMessage::CallTools {
        call_id: 2,
        calls: vec![ToolCall {
            id: "call_1".into(),
            name: "csv_stats".into(),
            arguments_json: r#"{"csv":"a\n1"}"#.into(),
        }],
    };
    let results = SupervisorMessage::ToolResults {
        call_id: 2,
        results: vec![ToolResult {
            tool_call_id: "call_1".into(),
            content: r#"{"a":{"mean":1}}"#.into(),
            is_error: false,
        }],
    };
    vec![
        encode_frame(&job).unwrap(),
        encode_frame(&complete).unwrap(),
        encode_frame(&hello).unwrap(),
        encode_frame(&calls).unwrap(),
        encode_frame(&results).unwrap(),
    ]
}

/// Decode as both directions and return the largest allocation seen while doing it.
fn decode_both_ways(frame: &[u8]) -> usize {
    Largest::reset();
    let _ = read_frame::<WorkerMessage>(&mut &frame[..]);
    let _ = read_frame::<SupervisorMessage>(&mut &frame[..]);
    if frame.len() >= HEADER_LEN {
        let _ = decode_payload::<WorkerMessage>(&frame[HEADER_LEN..]);
        let _ = decode_payload::<SupervisorMessage>(&frame[HEADER_LEN..]);
    }
    Largest::get()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_bytes_never_panic_or_overallocate(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let largest = decode_both_ways(&bytes);
        prop_assert!(largest <= MAX_FRAME_LEN, "allocated {largest} bytes");
    }

    #[test]
    fn mutated_frames_never_panic_or_overallocate(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut frame = sample_frames().swap_remove(which);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if truncate {
            let n = cut.index(frame.len());
            frame.truncate(n);
        }
        let largest = decode_both_ways(&frame);
        prop_assert!(largest <= MAX_FRAME_LEN, "allocated {largest} bytes");
    }

    #[test]
    fn valid_frames_round_trip(text in ".{0,200}", call_id in any::<u32>()) {
        let msg = WorkerMessage::Complete {
            call_id,
            request: CompletionRequest { messages: vec![ChatMessage::text(ChatRole::User, text)], tools: Vec::new(), stream: true },
        };
        let frame = encode_frame(&msg).unwrap();
        let back: WorkerMessage = read_frame(&mut &frame[..]).unwrap();
        prop_assert_eq!(back, msg);
    }
}

#[test]
fn a_payload_claiming_a_huge_string_is_refused_without_allocating_it() {
    // Variant 2 (Finished), then a varint length of u64::MAX / 2 for `execution_id`.
    let mut payload = vec![2u8, 0xFD];
    payload.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    Largest::reset();
    let err = decode_payload::<WorkerMessage>(&payload).unwrap_err();
    assert!(Largest::get() <= MAX_FRAME_LEN);
    assert!(matches!(err, ProtocolError::Decode(_)), "{err}");
}

#[test]
fn a_header_over_the_limit_is_refused() {
    let mut frame = ((MAX_FRAME_LEN as u32) + 1).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0u8; 16]);
    Largest::reset();
    let err = read_frame::<WorkerMessage>(&mut &frame[..]).unwrap_err();
    assert!(Largest::get() < 1024);
    assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{err}");
}
