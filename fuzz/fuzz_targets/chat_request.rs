#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard_gateway::fuzzing::chat_request(data);
});
