# Security groups and the bootstrap load balancer.
#
# Clients bootstrap through the load balancer, then connect straight to the
# agent each partition's metadata names (its advertised private IP), so the
# agents' Kafka port is open to the same client CIDRs as the load balancer.

resource "aws_security_group" "agents" {
  name_prefix = "${var.name}-agents-"
  description = "Floe agents: Kafka from clients, admin from operators and the load balancer"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-agents" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "agents_kafka_clients" {
  for_each = toset(var.client_cidrs)

  security_group_id = aws_security_group.agents.id
  description       = "Kafka from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
}

resource "aws_vpc_security_group_ingress_rule" "agents_kafka_lb" {
  security_group_id            = aws_security_group.agents.id
  description                  = "Kafka from the bootstrap load balancer"
  referenced_security_group_id = aws_security_group.lb.id
  ip_protocol                  = "tcp"
  from_port                    = var.kafka_port
  to_port                      = var.kafka_port
}

resource "aws_vpc_security_group_ingress_rule" "agents_admin_lb" {
  security_group_id            = aws_security_group.agents.id
  description                  = "Health checks from the bootstrap load balancer"
  referenced_security_group_id = aws_security_group.lb.id
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
}

resource "aws_vpc_security_group_ingress_rule" "agents_admin" {
  for_each = toset(var.admin_cidrs)

  security_group_id = aws_security_group.agents.id
  description       = "Admin (metrics, health, pprof) from operators"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
}

# Agents reach S3, RDS, Secrets Manager and the image registry. S3 traffic
# should go through a VPC gateway endpoint (free) rather than a NAT gateway
# (billed per GB): see terraform/README.md.
resource "aws_vpc_security_group_egress_rule" "agents_all" {
  security_group_id = aws_security_group.agents.id
  description       = "Outbound: S3, RDS, Secrets Manager, image registry"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

resource "aws_security_group" "lb" {
  name_prefix = "${var.name}-lb-"
  description = "Floe bootstrap load balancer: Kafka from clients"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_kafka_clients" {
  for_each = toset(var.client_cidrs)

  security_group_id = aws_security_group.lb.id
  description       = "Kafka bootstrap from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
}

resource "aws_vpc_security_group_egress_rule" "lb_to_agents_kafka" {
  security_group_id            = aws_security_group.lb.id
  description                  = "Kafka to agents"
  referenced_security_group_id = aws_security_group.agents.id
  ip_protocol                  = "tcp"
  from_port                    = var.kafka_port
  to_port                      = var.kafka_port
}

resource "aws_vpc_security_group_egress_rule" "lb_to_agents_admin" {
  security_group_id            = aws_security_group.lb.id
  description                  = "Health checks to agents"
  referenced_security_group_id = aws_security_group.agents.id
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
}

# Load balancer and target group names take 32 characters and may not end
# in a dash, which the cut can leave.
resource "aws_lb" "bootstrap" {
  name               = trimsuffix(substr("${var.name}-kafka", 0, 32), "-")
  load_balancer_type = "network"
  internal           = !var.public_load_balancer
  subnets            = local.lb_subnet_ids
  security_groups    = [aws_security_group.lb.id]

  # Any agent can bootstrap any client: spread across every zone's agents.
  enable_cross_zone_load_balancing = true

  tags = local.tags
}

resource "aws_lb_target_group" "kafka" {
  name                 = trimsuffix(substr("${var.name}-kafka", 0, 32), "-")
  port                 = var.kafka_port
  protocol             = "TCP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = 30

  # /healthz (the agent process and its WAL are fine), not /readyz: a
  # catalog outage must not make the Auto Scaling group replace every agent.
  health_check {
    protocol            = "HTTP"
    port                = tostring(var.admin_port)
    path                = "/healthz"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "kafka" {
  load_balancer_arn = aws_lb.bootstrap.arn
  port              = var.kafka_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kafka.arn
  }

  tags = local.tags
}
