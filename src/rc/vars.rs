//! Placeholder until the expansion module lands: the contract only.
#![allow(missing_docs, unused_variables)]
use std::borrow::Cow;
pub trait Env {
    fn get(&self, name: &[u8]) -> Option<Cow<'_, [u8]>>;
    fn positional(&self) -> Vec<Vec<u8>>;
    fn backquote(&mut self, cmd: &[u8]) -> Vec<u8>;
    fn log(&mut self, text: &str);
}
pub fn expand_value(raw: &[u8], env: &mut dyn Env) -> Vec<u8> {
    todo!()
}
pub fn expand_words(raw: &[u8], env: &mut dyn Env) -> Vec<Vec<u8>> {
    todo!()
}
pub fn expand_dquoted(raw: &[u8], env: &mut dyn Env) -> Vec<u8> {
    todo!()
}
pub fn parse_bool(value: &[u8], old: bool) -> bool {
    todo!()
}
pub fn needs_shell(cmd: &[u8], shellmetas: &[u8]) -> bool {
    todo!()
}
