//! Misusing the derives is a compile error at the attribute or field at fault, whose message
//! shows the right form. Each case in `tests/ui` has its expected message beside it.

#[test]
fn misuse_of_the_derives_fails_to_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
