/// The committed spec is what the code generates; regenerate with `cargo run -- openapi`.
#[test]
fn committed_spec_matches_the_code() {
    let generated = zhuge_card::startup::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(committed == generated, "openapi/openapi.json is out of date: run `cargo run -- openapi` and commit the result");
}
