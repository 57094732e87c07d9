//! Adam, with its moment estimates exposed so a checkpoint can resume exactly where it
//! stopped (candle's optimiser keeps them private).

use candle_core::{Result, Tensor, Var, backprop::GradStore};

pub struct AdamConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

pub struct Adam {
    config: AdamConfig,
    vars: Vec<(String, Var)>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    steps: usize,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let zeros = |vars: &[(String, Var)]| -> Result<Vec<Tensor>> {
            vars.iter()
                .map(|(_, v)| v.as_tensor().zeros_like())
                .collect()
        };
        Ok(Self {
            first_moments: zeros(&vars)?,
            second_moments: zeros(&vars)?,
            vars,
            config,
            steps: 0,
        })
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let AdamConfig {
            learning_rate,
            beta1,
            beta2,
            epsilon,
        } = self.config;
        let correction1 = 1.0 - beta1.powi(self.steps as i32);
        let correction2 = 1.0 - beta2.powi(self.steps as i32);
        for (index, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Detached: otherwise each step's moments would keep the previous step's graph
            // alive, and memory would grow with every step.
            let grad = grad.detach();
            let m = ((&self.first_moments[index] * beta1)? + (&grad * (1.0 - beta1))?)?;
            let v = ((&self.second_moments[index] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let update = ((&m / correction1)? / ((&v / correction2)?.sqrt()? + epsilon)?)?;
            var.set(&(var.as_tensor().detach() - (update * learning_rate)?)?)?;
            self.first_moments[index] = m;
            self.second_moments[index] = v;
        }
        Ok(())
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The moments as named tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .zip(self.first_moments.iter().zip(&self.second_moments))
            .flat_map(|((name, _), (m, v))| {
                [
                    (format!("adam.m.{name}"), m.clone()),
                    (format!("adam.v.{name}"), v.clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by `state` after `steps` steps.
    pub fn restore(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        steps: usize,
    ) -> Result<()> {
        for (index, (name, _)) in self.vars.iter().enumerate() {
            if let (Some(m), Some(v)) = (
                tensors.get(&format!("adam.m.{name}")),
                tensors.get(&format!("adam.v.{name}")),
            ) {
                self.first_moments[index] = m.clone();
                self.second_moments[index] = v.clone();
            }
        }
        self.steps = steps;
        Ok(())
    }
}
