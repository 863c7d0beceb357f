//! A progress bar drawn on a terminal only (indicatif, with the `progress` feature); without the
//! feature, or off a terminal, nothing is drawn.

/// A bar over `len` steps with a message.
pub struct Bar {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
}

impl Bar {
    /// A bar of `len` steps drawn with an indicatif `template` (`{prefix}`, `{bar}`, `{pos}`,
    /// `{len}`, `{msg}`, …).
    #[allow(unused_variables)]
    pub fn new(len: u64, template: &str, prefix: String) -> Self {
        #[cfg(feature = "progress")]
        {
            let style = indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = indicatif::ProgressBar::new(len).with_style(style);
            bar.set_prefix(prefix);
            Self { bar }
        }
        #[cfg(not(feature = "progress"))]
        Self {}
    }

    /// Advances by `n` steps and shows `message`, computed only when a bar is drawn.
    #[allow(unused_variables)]
    pub fn advance(&self, n: u64, message: impl FnOnce() -> String) {
        #[cfg(feature = "progress")]
        {
            self.bar.inc(n);
            if !self.bar.is_hidden() {
                self.bar.set_message(message());
            }
        }
    }

    /// Leaves the bar as it is (an error follows).
    pub fn abandon(&self) {
        #[cfg(feature = "progress")]
        self.bar.abandon();
    }

    /// Removes the bar.
    pub fn finish(&self) {
        #[cfg(feature = "progress")]
        self.bar.finish_and_clear();
    }
}
