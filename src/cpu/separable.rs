//! TensorFlow's `separableConv2d` with 'same' padding on planes: a depthwise 3x3, then a
//! pointwise 1x1 (the tile kernel with a one-pixel window) with bias and the epilogue.

use super::{Depthwise3x3, Epilogue, Isa, PackedConv, Plane, convolve};

pub struct SeparableConv {
    depthwise: Depthwise3x3,
    pointwise: PackedConv,
}

impl SeparableConv {
    /// `depthwise` [C, 1, 3, 3], `pointwise` [O, C] (or [O, C, 1, 1]), `bias` [O].
    pub fn new(
        depthwise: &[f32],
        pointwise: &[f32],
        bias: &[f32],
        (in_channels, out_channels): (usize, usize),
    ) -> Self {
        Self {
            depthwise: Depthwise3x3::new(depthwise, in_channels),
            pointwise: PackedConv::new(pointwise, bias, (out_channels, in_channels, 1), 1),
        }
    }

    /// Output channels as the output plane holds them.
    pub fn out_channels(&self) -> usize {
        self.pointwise.out_channels()
    }

    /// Each input (border at least 1) with `stride`, through a ReLU first when
    /// `relu_input`, into planes with `border` (shaped like the residual's when the
    /// epilogue has one).
    pub fn forward(
        &self,
        inputs: &[Plane],
        stride: usize,
        relu_input: bool,
        epilogue: Epilogue,
        border: usize,
        isa: Isa,
    ) -> Vec<Plane> {
        let hidden: Vec<Plane> = inputs
            .iter()
            .map(|input| self.depthwise.forward(input, stride, relu_input, 0, isa))
            .collect();
        let Some(first) = hidden.first() else {
            return Vec::new();
        };
        let (h, w, _) = first.dims();
        let mut outputs = Plane::zeros_batch(hidden.len(), (h, w, self.out_channels()), border);
        convolve(
            &self.pointwise,
            &hidden,
            (0, 0),
            &mut outputs,
            epilogue,
            isa,
        );
        outputs
    }
}
