variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "region" {
  description = "Region to deploy into."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Name prefix of every resource, and the Floe cluster name."
  type        = string
  default     = "floe-example"
}

variable "network" {
  description = "Existing VPC network name."
  type        = string
}

variable "subnetwork" {
  description = "Existing subnetwork name in var.region."
  type        = string
}

variable "client_cidrs" {
  description = "CIDR blocks of the Kafka clients."
  type        = list(string)
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to scrape metrics from the agents."
  type        = list(string)
  default     = []
}

variable "image" {
  description = "Floe container image; pin a version."
  type        = string
  default     = "ghcr.io/floebroker/floe:latest"
}
