output "bootstrap_address" {
  description = "host:port for the clients' bootstrap.servers (the Network Load Balancer)."
  value       = "${aws_lb.bootstrap.dns_name}:${var.kafka_port}"
}

output "load_balancer_arn" {
  description = "ARN of the bootstrap Network Load Balancer."
  value       = aws_lb.bootstrap.arn
}

output "bucket_name" {
  description = "Name of the S3 bucket holding the segment objects."
  value       = aws_s3_bucket.segments.id
}

output "bucket_arn" {
  description = "ARN of the segment bucket."
  value       = aws_s3_bucket.segments.arn
}

output "bucket_url" {
  description = "The --bucket URL the agents use, for running floe commands (migrate, bench) elsewhere."
  value       = local.bucket_url
}

output "catalog_endpoint" {
  description = "host:port of the RDS PostgreSQL catalog."
  value       = "${aws_db_instance.catalog.address}:${aws_db_instance.catalog.port}"
}

output "catalog_secret_arn" {
  description = "ARN of the Secrets Manager secret (JSON username/password) RDS keeps the catalog's master password in."
  value       = local.db_secret_arn
}

output "cluster_name" {
  description = "The Floe cluster name (--cluster) of the agents."
  value       = local.cluster
}

output "autoscaling_group_name" {
  description = "Name of the agents' Auto Scaling group."
  value       = aws_autoscaling_group.agents.name
}

output "agent_security_group_id" {
  description = "Security group of the agents; reference it to let more sources reach them."
  value       = aws_security_group.agents.id
}

output "agent_role_arn" {
  description = "ARN of the agents' IAM role."
  value       = aws_iam_role.agent.arn
}
