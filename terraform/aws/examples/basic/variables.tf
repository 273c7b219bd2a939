variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource, and the Floe cluster name."
  type        = string
  default     = "floe-example"
}

variable "vpc_id" {
  description = "Existing VPC to deploy into."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets in two or more availability zones."
  type        = list(string)
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
