//! The dictionary parser on any text, and the encoder on any value.

#![no_main]

use std::path::Path;

use liberad::model::ReplyAttribute;
use liberad::radius::dictionary::Dictionary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (dictionary_text, attribute) = text.split_once('\u{0}').unwrap_or((text, ""));
    let mut dictionary = Dictionary::builtin();
    // $INCLUDE of real files is not what is fuzzed here.
    if dictionary_text.contains("$INCLUDE") {
        return;
    }
    let _ = dictionary.parse_text(dictionary_text, Path::new("fuzz"), 0);
    if let Ok(attribute) = attribute.parse::<ReplyAttribute>()
        && let Ok(wire) = dictionary.encode(&attribute)
    {
        let _ = dictionary.describe(wire.typ, &wire.value);
    }
});
