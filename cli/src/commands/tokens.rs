//! `zeta tokens`: how many tokens a text is for a model, against its context length, and
//! optionally the ids and token strings.

use std::io::{IsTerminal as _, Read as _};

use zeta_proto::v1;

use crate::args::TokensArgs;
use crate::client::Daemon;
use crate::error::CliError;

/// Runs `zeta tokens`.
pub async fn tokens(d: &Daemon, args: &TokensArgs) -> Result<(), CliError> {
    let text = match &args.text {
        Some(t) => t.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t).map_err(super::run::stdin_error)?;
            if t.is_empty() {
                return Err(CliError::Usage("no text: standard input was empty".into()));
            }
            t
        }
        None => return Err(CliError::Usage("no text: give it as an argument or on standard input".into())),
    };
    let input = if args.chat {
        v1::tokenize_request::Input::Chat(v1::Chat {
            messages: vec![v1::Message { role: "user".into(), content: Some(text), ..Default::default() }],
            continue_final_message: false,
        })
    } else {
        v1::tokenize_request::Input::Text(text)
    };
    let req = v1::TokenizeRequest {
        model: super::model_name(&args.model).to_owned(),
        input: Some(input),
        add_special_tokens: args.special,
        tools: vec![],
        return_tokens: args.tokens,
        count_only: false,
        tool_choice: None,
        chat_template_kwargs_json: String::new(),
    };
    let r = d.models().tokenize(req).await.map_err(|s| d.err(s))?.into_inner();
    let count = crate::format::plural(r.count.into(), "token");
    outln!("{count} ({} has a context of {} tokens)", r.model, r.context_length)?;
    if args.ids {
        let ids: Vec<String> = r.ids.iter().map(u32::to_string).collect();
        outln!("{}", ids.join(" "))?;
    }
    if args.tokens {
        // The text a token reads as first; the vocabulary's own spelling (`Ġworld`) after it,
        // where it differs, for whoever is debugging a tokenizer.
        for ((id, token), text) in r.ids.iter().zip(&r.tokens).zip(&r.texts) {
            if token == text {
                outln!("{id}\t{text:?}")?;
            } else {
                outln!("{id}\t{text:?}\t{token}")?;
            }
        }
    }
    Ok(())
}
