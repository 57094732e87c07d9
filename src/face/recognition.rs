//! The dlib face recognition ResNet (29 convolutions, 128-D output) as published in
//! face-api.js. Each convolution is followed by a per-channel scale layer (dlib's affine
//! layer, a frozen batch norm); it is folded into the convolution when the weights load,
//! which saves a full pass over every activation. On the CPU the network runs on NHWC
//! planes with the direct and Winograd convolutions of `crate::cpu`; elsewhere on candle
//! tensors.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use image::RgbImage;
use rayon::prelude::*;

use crate::cpu::{
    self, Activation, Epilogue, Isa, PackedConv, Plane, WinogradConv, convolve, convolve_winograd,
};
use crate::nn::{GemmConv, global_average, linear};

pub const CHIP_SIZE: usize = 150;
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
pub const EMBEDDING_DIM: usize = 128;

/// Convolution, bias and scale layer, folded: `(conv(x) + b) * s + t` = `conv_{w*s}(x) + (b*s + t)`.
pub struct ConvScale {
    conv: Conv,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// The folded weights in the form the device runs: candle tensors off the CPU, the
/// `cpu` kernels' packing on it.
enum Conv {
    Tensors(GemmConv),
    Direct(PackedConv),
    Winograd(WinogradConv),
}

/// Up to this many input channels the 3x3 convolutions of stride 1 run by Winograd's
/// algorithm. Above it its weights (16/9 as many) outweigh the saved work: at 256
/// channels and 4x4 pixels a convolution is little more than a pass over its weights.
const WINOGRAD_MAX_CHANNELS: usize = 128;

impl ConvScale {
    /// `planes`: the `cpu` kernels' packing (only on the CPU), else candle tensors.
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        planes: bool,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "conv.weight")?;
        let bias = vb.get(out_channels, "conv.bias")?;
        let scale = vb.get(out_channels, "scale.weight")?;
        let shift = vb.get(out_channels, "scale.bias")?;
        let weight = weight.broadcast_mul(&scale.reshape((out_channels, 1, 1, 1))?)?;
        let bias = ((bias * &scale)? + shift)?;
        // Strided convolutions are 'valid' in dlib; the others keep the size.
        let padding = if stride == 1 { kernel / 2 } else { 0 };
        let conv = if planes {
            let (weight, bias) = (weight.flatten_all()?.to_vec1()?, bias.to_vec1()?);
            if kernel == 3 && stride == 1 && in_channels <= WINOGRAD_MAX_CHANNELS {
                Conv::Winograd(WinogradConv::new(
                    &weight,
                    &bias,
                    (out_channels, in_channels),
                ))
            } else {
                Conv::Direct(PackedConv::new(
                    &weight,
                    &bias,
                    (out_channels, in_channels, kernel),
                    stride,
                ))
            }
        } else {
            Conv::Tensors(GemmConv::new(&weight, bias, stride, padding)?)
        };
        Ok(Self {
            conv,
            out_channels,
            kernel,
            stride,
            padding,
        })
    }

    /// The tensor path, for weights loaded as tensors.
    pub fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        match &self.conv {
            Conv::Tensors(conv) => conv.forward(x, relu),
            _ => candle_core::bail!("CPU weights run on NHWC planes (forward_planes)"),
        }
    }

    /// Into `outputs`, one per image (see `cpu::convolve`).
    fn forward_planes(
        &self,
        inputs: &[Plane],
        outputs: &mut [Plane],
        epilogue: Epilogue,
        isa: Isa,
    ) -> Result<()> {
        let padding = (self.padding, self.padding);
        match &self.conv {
            Conv::Winograd(conv) => convolve_winograd(conv, inputs, outputs, epilogue, isa),
            Conv::Direct(conv) => convolve(conv, inputs, padding, outputs, epilogue, isa),
            Conv::Tensors(_) => {
                candle_core::bail!("these recognition weights are tensors, not planes")
            }
        }
        Ok(())
    }

    /// The output plane's size for an input of `size`, and its channels.
    fn output_shape(&self, size: usize) -> (usize, usize) {
        let out = (size + 2 * self.padding - self.kernel) / self.stride + 1;
        (out, self.out_channels)
    }
}

/// Two 3x3 convolutions and a shortcut. A downsampling block strides its first
/// convolution and average-pools the shortcut, zero-padding channels and, where the odd
/// sizes disagree, the last row and column.
pub struct ResidualBlock {
    conv1: ConvScale,
    conv2: ConvScale,
    downsample: bool,
}

impl ResidualBlock {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        downsample: bool,
        planes: bool,
    ) -> Result<Self> {
        let stride = if downsample { 2 } else { 1 };
        let conv = |name: &str, input, stride| {
            ConvScale::new(vb.pp(name), input, out_channels, 3, stride, planes)
        };
        Ok(Self {
            conv1: conv("conv1", in_channels, stride)?,
            conv2: conv("conv2", out_channels, 1)?,
            downsample,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.conv2.forward(&self.conv1.forward(x, true)?, false)?;
        let shortcut = if self.downsample {
            x.avg_pool2d_with_stride(2, 2)?
        } else {
            x.clone()
        };
        let (_, shortcut_channels, shortcut_h, shortcut_w) = shortcut.dims4()?;
        let (_, out_channels, out_h, out_w) = out.dims4()?;
        let out = out
            .pad_with_zeros(2, 0, shortcut_h.saturating_sub(out_h))?
            .pad_with_zeros(3, 0, shortcut_w.saturating_sub(out_w))?;
        let shortcut = shortcut.pad_with_zeros(1, 0, out_channels - shortcut_channels)?;
        (out + shortcut)?.relu()
    }

    /// The same on a batch of NHWC planes (square, as every plane of this network is).
    fn forward_planes(&self, x: &[Plane], isa: Isa) -> Result<Vec<Plane>> {
        let Some(first) = x.first() else {
            return Ok(Vec::new());
        };
        let (inner, channels) = self.conv1.output_shape(first.dims().0);
        let mut hidden = Plane::zeros_batch(x.len(), (inner, inner, channels), 1);
        let relu = Epilogue::activation(Activation::Relu);
        self.conv1.forward_planes(x, &mut hidden, relu, isa)?;
        if !self.downsample {
            let mut out = Plane::zeros_batch(x.len(), (inner, inner, channels), 1);
            let add_input = Epilogue {
                residual: Some(x),
                activation: Activation::Relu,
            };
            self.conv2
                .forward_planes(&hidden, &mut out, add_input, isa)?;
            return Ok(out);
        }
        // Block inputs come out of a ReLU, so their average needs none where the
        // convolution's output does not reach (the odd sizes' last row and column).
        let shortcut: Vec<Plane> = x
            .iter()
            .map(|plane| plane.average_pool_2x2(channels, 1))
            .collect();
        let mut out = shortcut.clone();
        let add_shortcut = Epilogue {
            residual: Some(&shortcut),
            activation: Activation::Relu,
        };
        self.conv2
            .forward_planes(&hidden, &mut out, add_shortcut, isa)?;
        Ok(out)
    }
}

pub struct FaceRecognitionNet {
    stem: ConvScale,
    blocks: Vec<ResidualBlock>,
    fc: Linear,
    /// `fc`'s weights, [128][256], for the CPU path, which computes the last layer in
    /// plain Rust: candle's matrix product took 0.16 ms for this one vector, 2% of an
    /// embedding.
    fc_rows: Vec<f32>,
}

impl FaceRecognitionNet {
    /// Planes on the CPU, tensors elsewhere.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let on_cpu = vb.device().is_cpu();
        Self::with_layers(vb, on_cpu)
    }

    /// The tensor path even on the CPU: what a GPU runs, to check it against the planes.
    pub fn on_tensors(vb: VarBuilder) -> Result<Self> {
        Self::with_layers(vb, false)
    }

    fn with_layers(vb: VarBuilder, planes: bool) -> Result<Self> {
        // (name, in, out, downsample), in the order of the forward pass.
        const BLOCKS: [(&str, usize, usize, bool); 14] = [
            ("conv32_1", 32, 32, false),
            ("conv32_2", 32, 32, false),
            ("conv32_3", 32, 32, false),
            ("conv64_down", 32, 64, true),
            ("conv64_1", 64, 64, false),
            ("conv64_2", 64, 64, false),
            ("conv64_3", 64, 64, false),
            ("conv128_down", 64, 128, true),
            ("conv128_1", 128, 128, false),
            ("conv128_2", 128, 128, false),
            ("conv256_down", 128, 256, true),
            ("conv256_1", 256, 256, false),
            ("conv256_2", 256, 256, false),
            ("conv256_down_out", 256, 256, true),
        ];
        let blocks = BLOCKS
            .iter()
            .map(|&(name, input, output, down)| {
                ResidualBlock::new(vb.pp(name), input, output, down, planes)
            })
            .collect::<Result<Vec<_>>>()?;
        let fc = linear(&vb.pp("fc"), 256, EMBEDDING_DIM, false)?;
        Ok(Self {
            stem: ConvScale::new(vb.pp("conv32_down"), 3, 32, 7, 2, planes)?,
            blocks,
            fc_rows: fc.weight().flatten_all()?.to_vec1()?,
            fc,
        })
    }

    /// [N, 3, 150, 150] normalised -> [N, 128]; on planes by `isa`'s kernels.
    pub fn forward(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        if !matches!(self.stem.conv, Conv::Tensors(_)) {
            return self.forward_cpu(x, isa);
        }
        let x = self.stem.forward(x, true)?; // [N, 32, 72, 72]
        let mut x = x.max_pool2d_with_stride(3, 2)?; // [N, 32, 35, 35]
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        // [N, 256, 2, 2]
        self.fc.forward(&global_average(&x)?)
    }

    /// The CPU path: the batch as NHWC planes, layer by layer. With at least an image
    /// per thread each thread takes its share of the images through the whole network;
    /// otherwise each layer's work is shared out over the pool.
    fn forward_cpu(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let values = x.flatten_all()?.to_vec1::<f32>()?;
        let inputs: Vec<Plane> = values
            .par_chunks_exact(c * h * w)
            .map(|image| Plane::from_planar(image, c, h, w))
            .collect();
        let embeddings = self.embed_planes(&inputs, isa)?.concat();
        Tensor::from_vec(embeddings, (n, EMBEDDING_DIM), x.device())
    }

    /// The embeddings of 150x150 chips on the CPU, from their pixels straight to the
    /// networks' planes (the tensor path's NCHW tensor and its conversion took 0.2 ms of
    /// a 7 ms embedding).
    pub fn embed_chips_cpu(&self, chips: &[RgbImage], isa: Isa) -> Result<Vec<Vec<f32>>> {
        let inputs: Vec<Plane> = chips
            .par_iter()
            .map(|chip| Plane::from_rgb(chip, MEAN_RGB, 0))
            .collect();
        self.embed_planes(&inputs, isa)
    }

    fn embed_planes(&self, inputs: &[Plane], isa: Isa) -> Result<Vec<Vec<f32>>> {
        let threads = rayon::current_num_threads();
        let features = if threads > 1 && inputs.len() >= threads {
            let shares: Vec<&[Plane]> = inputs.chunks(inputs.len().div_ceil(threads)).collect();
            let per_share = cpu::per_thread(&shares, |share| self.features(share, isa));
            per_share.into_iter().collect::<Result<Vec<_>>>()?.concat()
        } else {
            cpu::as_team(|| self.features(inputs, isa))?
        };
        let width = self.fc_rows.len() / EMBEDDING_DIM;
        Ok(features
            .chunks_exact(width)
            .map(|image| {
                self.fc_rows
                    .chunks_exact(width)
                    .map(|row| row.iter().zip(image).map(|(w, x)| w * x).sum())
                    .collect()
            })
            .collect())
    }

    /// The pooled 256 features of each image, in order, before the last linear layer.
    fn features(&self, inputs: &[Plane], isa: Isa) -> Result<Vec<f32>> {
        let Some(first) = inputs.first() else {
            return Ok(Vec::new());
        };
        let (size, channels) = self.stem.output_shape(first.dims().0);
        let mut stem = Plane::zeros_batch(inputs.len(), (size, size, channels), 0);
        self.stem.forward_planes(
            inputs,
            &mut stem,
            Epilogue::activation(Activation::Relu),
            isa,
        )?;
        let mut planes: Vec<Plane> = stem
            .iter()
            .map(|plane| plane.max_pool(3, 2, 1, isa))
            .collect();
        for block in &self.blocks {
            planes = block.forward_planes(&planes, isa)?;
        }
        Ok(planes
            .iter()
            .flat_map(|plane| plane.channel_means(Activation::None))
            .collect())
    }
}
