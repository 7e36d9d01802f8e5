//! Settings whose value is one word from a fixed list (`--sigterm stop`, `--log-target
//! syslog`, `--log-format json`): one macro gives each its parser, its printer and its serde
//! form, so the command line, configuration files and `config-view` spell them alike.

/// Declares `pub enum $name { $variant, ... }` with `as_str`, `ALL`, `Display`, `FromStr`
/// (exact spelling; the error lists the choices), `Serialize` and `Deserialize`. The first
/// variant is the default.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            #[default]
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every choice, in the order of the declaration (the default first).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word on the command line and in configuration files.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let words: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("expected one of {}", words.join(", "))
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

word_enum! {
    /// What `SIGTERM` means (`--sigterm`, configuration key `sigterm`).
    ///
    /// pyzenkit's `SIGTERM` ends a run at once, without `stop`; systemd, Docker and Kubernetes
    /// send `SIGTERM` for a graceful stop (and `SIGKILL` after their grace period).
    pub enum Sigterm {
        /// `terminate` (the default, pyzenkit's): the kernel's `terminate` at once; `stop`
        /// handlers do not run.
        Terminate = "terminate",
        /// `stop`: a graceful stop, as `SIGINT`: `stop` handlers run, the stop timeout and the
        /// stop watchdog apply, and each `SIGTERM` counts towards the third stop request
        /// that ends the run at once.
        Stop = "stop",
    }
}

word_enum! {
    /// Where log lines go (`--log-target`, configuration key `log_target`); see
    /// [`logging`](crate::logging) for what `auto` picks.
    pub enum LogTarget {
        /// `auto` (the default): the program's logger if it installed one; otherwise in the
        /// foreground journald (stderr is the journal), stderr with `<N>` priority prefixes
        /// (under systemd) or plain stderr; as a daemon the log file.
        Auto = "auto",
        /// `console`: stderr (foreground only: a daemon's stderr is `/dev/null`).
        Console = "console",
        /// `file`: the log file (`log_file`), also in the foreground.
        File = "file",
        /// `syslog`: the syslog socket (`syslog_socket`, default `/dev/log`), RFC 3164.
        Syslog = "syslog",
        /// `journald`: the systemd journal's native protocol (foreground only).
        Journald = "journald",
    }
}

word_enum! {
    /// How console and file lines look (`--log-format`, configuration key `log_format`).
    pub enum LogFormat {
        /// `text` (the default): `TIME LEVEL: message`, TIME in RFC 3339 UTC with a `Z`.
        Text = "text",
        /// `json`: one JSON object per line (`time`, `level`, `target`, `message`, `fields`),
        /// for container log collectors.
        Json = "json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_print_and_serialize() {
        for s in Sigterm::ALL {
            assert_eq!(s.as_str().parse::<Sigterm>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Sigterm::default(), Sigterm::Terminate);
        assert_eq!(LogTarget::default(), LogTarget::Auto);
        assert_eq!(LogFormat::default(), LogFormat::Text);
        let err = "STOP".parse::<Sigterm>().unwrap_err();
        assert_eq!(err, "expected one of terminate, stop");
        assert_eq!(
            serde_json::from_str::<LogTarget>("\"syslog\"").unwrap(),
            LogTarget::Syslog
        );
        assert!(serde_json::from_str::<LogFormat>("\"xml\"").is_err());
    }
}
