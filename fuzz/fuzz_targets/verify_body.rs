//! The JSON body of `POST /v1/keys/verify`, read as the route reads it
//! (`keyhaven_server::extract::parse_json` into `keyhaven_service::verify::VerifyRequest`),
//! then through the checks the verify path makes before it touches the store: the scope
//! rules (`validate::scopes`) and the key parse. Nothing may panic, and a refused body's
//! error never shows a well-formed key (errors must not echo request values).
#![no_main]

use keyhaven_server::extract::parse_json;
use keyhaven_service::validate;
use keyhaven_service::verify::VerifyRequest;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    match parse_json::<VerifyRequest>(data) {
        Ok(request) => {
            let _ = validate::scopes(&request.scopes);
            let _ = keyhaven_core::parse(request.key.expose_secret());
        }
        Err(error) => {
            let shown = error.to_string();
            for word in shown.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                assert!(
                    keyhaven_core::parse(word).is_err(),
                    "an error echoes a key: {shown}"
                );
            }
        }
    }
});
