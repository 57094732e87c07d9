//! Every colour the window paints, in one place and chosen per theme. egui follows the
//! system's light or dark theme, and a colour that reads on one can vanish on the other:
//! egui's `DARK_GREEN` on the dark panel is 2.3:1, so the desk's "GENUINE" verdict was the
//! hardest word on the screen to read, and egui's own error red is 4.3:1 on its dark
//! window. Words keep the 4.5:1 contrast WCAG asks of body text on the panel they sit on;
//! chart marks keep the 3:1 it asks of graphics.

use eframe::egui::{self, Color32};

/// The colours of one theme, by what they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    /// Accepted, recorded, saved: nothing more to do.
    pub accepted: Color32,
    /// What a person must act on or look at: the kiosk's PIN prompt, the second clerk's
    /// review, a coaching hint, advice beside a success.
    pub attention: Color32,
    /// Refused, failed, forged.
    pub refused: Color32,
    // The workbench's charts: its two compared curves and its histogram's bars, then the
    // marks on its curves, whose names its key writes in the same colours.
    pub curves: [Color32; 2],
    pub genuine_bars: Color32,
    pub impostor_bars: Color32,
    pub threshold: Color32,
    pub eer: Color32,
    pub supported_floor: Color32,
}

const DARK: Palette = Palette {
    accepted: Color32::from_rgb(80, 200, 120),
    attention: Color32::from_rgb(240, 170, 60),
    refused: Color32::from_rgb(245, 100, 100),
    curves: [
        Color32::from_rgb(230, 90, 80),
        Color32::from_rgb(90, 150, 240),
    ],
    genuine_bars: Color32::from_rgb(60, 160, 60),
    impostor_bars: Color32::from_rgb(200, 60, 60),
    threshold: Color32::from_rgb(60, 200, 200),
    eer: Color32::from_rgb(220, 90, 220),
    supported_floor: Color32::from_rgb(200, 200, 60),
};

const LIGHT: Palette = Palette {
    accepted: Color32::from_rgb(0, 110, 40),
    attention: Color32::from_rgb(150, 80, 0),
    refused: Color32::from_rgb(180, 30, 30),
    curves: [
        Color32::from_rgb(200, 50, 40),
        Color32::from_rgb(30, 90, 200),
    ],
    genuine_bars: Color32::from_rgb(40, 130, 40),
    impostor_bars: Color32::from_rgb(200, 50, 50),
    threshold: Color32::from_rgb(0, 120, 120),
    eer: Color32::from_rgb(170, 40, 170),
    supported_floor: Color32::from_rgb(120, 100, 0),
};

/// Boxes drawn over the camera's picture, where the panel's theme says nothing about what
/// lies beneath: the plainest colours, read with the name written beside each box.
pub const FACE_MATCHED: Color32 = Color32::GREEN;
pub const FACE_UNSURE: Color32 = Color32::YELLOW;
pub const FACE_UNKNOWN: Color32 = Color32::RED;

impl Palette {
    pub fn of(visuals: &egui::Visuals) -> Self {
        if visuals.dark_mode { DARK } else { LIGHT }
    }
}

/// The palette of the theme `ui` is drawn in.
pub fn palette(ui: &egui::Ui) -> Palette {
    Palette::of(ui.visuals())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Palette {
        fn words(&self) -> [Color32; 6] {
            [
                self.accepted,
                self.attention,
                self.refused,
                self.threshold,
                self.eer,
                self.supported_floor,
            ]
        }

        fn marks(&self) -> [Color32; 4] {
            [
                self.curves[0],
                self.curves[1],
                self.genuine_bars,
                self.impostor_bars,
            ]
        }
    }

    /// WCAG 2's contrast ratio between two opaque colours, from 1 (the same) to 21.
    fn contrast(a: Color32, b: Color32) -> f32 {
        fn luminance(colour: Color32) -> f32 {
            let linear = |channel: u8| {
                let c = f32::from(channel) / 255.0;
                if c <= 0.04045 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * linear(colour.r()) + 0.7152 * linear(colour.g()) + 0.0722 * linear(colour.b())
        }
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn words_and_marks_stand_out_from_the_panel_in_either_theme() {
        for visuals in [egui::Visuals::dark(), egui::Visuals::light()] {
            let palette = Palette::of(&visuals);
            for background in [visuals.panel_fill, visuals.window_fill] {
                for word in palette.words() {
                    let ratio = contrast(word, background);
                    assert!(
                        ratio >= 4.5,
                        "{word:?} on {background:?} (dark {}) is {ratio:.2}:1",
                        visuals.dark_mode
                    );
                }
                for mark in palette.marks() {
                    let ratio = contrast(mark, background);
                    assert!(
                        ratio >= 3.0,
                        "{mark:?} on {background:?} (dark {}) is {ratio:.2}:1",
                        visuals.dark_mode
                    );
                }
            }
        }
    }

    #[test]
    fn the_contrast_ratio_spans_one_to_twenty_one() {
        assert!((contrast(Color32::BLACK, Color32::WHITE) - 21.0).abs() < 1e-3);
        assert!((contrast(Color32::WHITE, Color32::BLACK) - 21.0).abs() < 1e-3);
        assert!((contrast(Color32::GRAY, Color32::GRAY) - 1.0).abs() < 1e-6);
        // egui's own dark green on its own dark panel: what the desk's verdict used to be.
        assert!(contrast(Color32::DARK_GREEN, egui::Visuals::dark().panel_fill) < 3.0);
    }
}
